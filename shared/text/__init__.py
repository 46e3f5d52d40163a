"""Text out of files and text into chunks: shared by the documents service and mail attachments."""
