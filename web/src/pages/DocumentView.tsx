import { useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";

import { apiError, session } from "../lib/session";
import type { Document } from "../lib/types";
import { errorText } from "../lib/action";

/** A document at the cited page: a PDF in the browser's own viewer at #page=N, any other type
 * as its extracted text with the quoted passage highlighted. The file is fetched with the access
 * token (a plain link could not send it) and shown from a blob: URL. */
export function DocumentViewPage() {
  const [params] = useSearchParams();
  const id = params.get("id") ?? "";
  const page = params.get("page");
  const quote = params.get("quote") ?? "";
  const [document, setDocument] = useState<Document | null>(null);
  const [url, setUrl] = useState("");
  const [text, setText] = useState("");
  const [error, setError] = useState("");

  useEffect(() => {
    let objectUrl = "";
    (async () => {
      const meta = await session.json<Document>(`/documents/${id}`);
      setDocument(meta);
      if (meta.mime_type === "application/pdf") {
        const response = await session.request(`/documents/${id}/content`);
        if (!response.ok) throw await apiError(response);
        objectUrl = URL.createObjectURL(await response.blob());
        setUrl(objectUrl);
        return;
      }
      // The extracted text (a DOCX's or an email's words, not its bytes): quotes are exact
      // substrings of it. A plain-text file ingested before the text was kept: the file itself.
      let response = await session.request(`/documents/${id}/text`);
      if (response.status === 404 && meta.mime_type.startsWith("text/")) {
        response = await session.request(`/documents/${id}/content`);
      }
      if (!response.ok) throw await apiError(response);
      setText(await response.text());
    })().catch((caught) => setError(errorText(caught)));
    return () => {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [id]);

  const at = quote ? text.indexOf(quote) : -1;
  return (
    <section aria-labelledby="document-title">
      <h1 id="document-title">
        {document?.title ?? "Document"}
        {page ? `, page ${page}` : ""}
      </h1>
      {error && <p role="alert" className="error">{error}</p>}
      {url && <iframe className="viewer" title={document?.title ?? "document"} src={`${url}#page=${page ?? 1}`} />}
      {text && (
        <pre className="document-text">
          {at < 0 ? (
            text
          ) : (
            <>
              {text.slice(0, at)}
              <mark>{quote}</mark>
              {text.slice(at + quote.length)}
            </>
          )}
        </pre>
      )}
    </section>
  );
}
