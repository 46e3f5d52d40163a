/** Turning an answer's citation markers (`[1]`, `[1, 3]`) into links to their sources. */

export interface Source {
  n: number;
  kind: "document" | "email" | "attachment";
  document_id?: string | null;
  email_id?: string | null;
  attachment_id?: string | null;
  title?: string | null;
  subject?: string | null;
  sender?: string | null;
  page?: number | null;
  quote: string;
  text: string;
  available?: boolean | null;
}

export type Segment = { text: string } | { cite: number; source: Source | undefined };

const MARKER = /\[\s*(\d{1,3}(?:\s*,\s*\d{1,3})*)\s*\]/g;

/** The answer as text pieces and citations, in order; a number no source has stays a citation
 * without a source (shown as plain text by the page). */
export function segments(answer: string, sources: Source[]): Segment[] {
  const byNumber = new Map(sources.map((source) => [source.n, source]));
  const out: Segment[] = [];
  let last = 0;
  for (const match of answer.matchAll(MARKER)) {
    const at = match.index ?? 0;
    if (at > last) out.push({ text: answer.slice(last, at) });
    for (const part of match[1].split(",")) {
      const n = Number(part.trim());
      out.push({ cite: n, source: byNumber.get(n) });
    }
    last = at + match[0].length;
  }
  if (last < answer.length) out.push({ text: answer.slice(last) });
  return out;
}

/** Where a citation leads inside the app: a document at its page, an email in the reader. */
export function sourceHref(source: Source): string {
  if (source.kind === "document" && source.document_id) {
    const page = source.page ? `&page=${source.page}` : "";
    return `/files/view?id=${source.document_id}${page}&quote=${encodeURIComponent(source.quote)}`;
  }
  if (source.kind === "attachment" && source.email_id && source.attachment_id) {
    return `/inbox?email=${source.email_id}&attachment=${source.attachment_id}`;
  }
  return `/inbox?email=${source.email_id ?? ""}`;
}

/** A source's one-line label for the sources panel. */
export function sourceLabel(source: Source): string {
  if (source.kind === "document") return `${source.title ?? "Document"}${source.page ? `, page ${source.page}` : ""}`;
  const subject = source.subject ?? "(no subject)";
  return source.sender ? `${subject} — ${source.sender}` : subject;
}
