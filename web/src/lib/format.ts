/** Small display helpers shared by the pages. */

export function bytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 ** 2) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 ** 2).toFixed(1)} MB`;
}

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "";
}

const WARNINGS: Record<string, string> = {
  mail_unavailable: "Your mail could not be searched just now; this answer uses your documents only.",
  documents_unavailable: "Your documents could not be searched just now; this answer uses your mail only.",
  llm_unavailable: "The language model is unavailable: these are the most relevant passages, quoted as they are.",
  imported_from_legacy: "Imported from the previous app; it kept no sources.",
};

export function warningText(code: string): string {
  return WARNINGS[code] ?? code.replaceAll("_", " ");
}

export const STATUS_TEXT: Record<string, string> = {
  complete: "",
  incomplete: "This answer stopped before it was finished.",
  no_sources: "Nothing in your documents or mail matches this question, so no answer was written.",
  failed: "No answer could be written: your documents and mail could not be searched.",
};
