import { type DragEvent, type FormEvent, useCallback, useEffect, useState } from "react";
import { Link } from "react-router-dom";

import { bytes, when } from "../lib/format";
import { ApiError, session } from "../lib/session";
import type { Document, Page } from "../lib/types";
import { errorText, reporting } from "../lib/action";

interface Upload {
  name: string;
  sent: number;
  total: number;
  error: string;
}

const UPLOAD_ERRORS: Record<number, string> = {
  409: "This file is already uploaded.",
  413: "This file is larger than the server accepts.",
  415: "Only PDF, Word (.docx), text, Markdown, HTML and .eml files can be read.",
};

/** One file as multipart/form-data, with byte progress (fetch() cannot report upload progress). */
function send(file: File, onProgress: (sent: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/documents");
    request.setRequestHeader("Authorization", `Bearer ${session.accessToken() ?? ""}`);
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () => {
      if (request.status < 300) return resolve();
      let message = UPLOAD_ERRORS[request.status] ?? `The upload failed (${request.status}).`;
      try {
        message = `${UPLOAD_ERRORS[request.status] ?? ""} ${JSON.parse(request.responseText).error.message}`.trim();
      } catch {
        // keep the generic message
      }
      reject(new ApiError(request.status, "upload_failed", message));
    };
    request.onerror = () => reject(new ApiError(0, "network", "The server could not be reached."));
    const form = new FormData();
    form.append("file", file);
    request.send(form);
  });
}

export function DocumentsPage() {
  const [documents, setDocuments] = useState<Document[]>([]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [results, setResults] = useState<{ document_id: string; title: string; page: number | null; text: string }[]>([]);
  const [error, setError] = useState("");

  const load = useCallback(async () => {
    const page = await session.json<Page<Document>>("/documents?limit=100");
    setDocuments(page.items);
    return page.items;
  }, []);

  useEffect(() => {
    let timer: ReturnType<typeof setTimeout>;
    const poll = async () => {
      try {
        const items = await load();
        const busy = items.some((d) => d.status === "queued" || d.status === "processing");
        timer = setTimeout(poll, busy ? 1000 : 5000);
      } catch (caught) {
        setError(errorText(caught));
      }
    };
    void poll();
    return () => clearTimeout(timer);
  }, [load]);

  async function upload(files: FileList | File[]) {
    const list = Array.from(files);
    setUploads(list.map((file) => ({ name: file.name, sent: 0, total: file.size, error: "" })));
    await Promise.all(
      list.map(async (file, index) => {
        const update = (change: Partial<Upload>) =>
          setUploads((before) => before.map((u, i) => (i === index ? { ...u, ...change } : u)));
        try {
          await send(file, (sent) => update({ sent }));
          update({ sent: file.size });
        } catch (caught) {
          update({ error: errorText(caught) });
        }
      }),
    );
    await load();
  }

  function drop(event: DragEvent<HTMLElement>) {
    event.preventDefault();
    void upload(event.dataTransfer.files);
  }

  async function search(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const q = String(new FormData(event.currentTarget).get("q")).trim();
    if (!q) return setResults([]);
    try {
      const found = await session.json<{ results: typeof results }>(`/documents/search?q=${encodeURIComponent(q)}&k=10`);
      setResults(found.results);
    } catch (caught) {
      setError(errorText(caught));
    }
  }

  function rename(document: Document) {
    const title = window.prompt("New title", document.title);
    if (!title) return;
    void reporting(setError, async () => {
      await session.json(`/documents/${document.id}`, { method: "PATCH", body: { title } });
      await load();
    });
  }

  function remove(document: Document) {
    if (!window.confirm(`Delete “${document.title}”? Its passages leave every future answer.`)) return;
    void reporting(setError, async () => {
      await session.json(`/documents/${document.id}`, { method: "DELETE" });
      await load();
    });
  }

  return (
    <section aria-labelledby="documents">
      <h1 id="documents">Documents</h1>
      <label className="dropzone" onDragOver={(e) => e.preventDefault()} onDrop={drop}>
        Drop files here, or choose them
        <input type="file" multiple name="files" onChange={(e) => e.target.files && void upload(e.target.files)} />
      </label>
      {uploads.length > 0 && (
        <ul className="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.name}>
              {u.name}: <progress max={u.total || 1} value={u.sent} /> {u.error ? <span className="error">{u.error}</span> : `${bytes(u.sent)} of ${bytes(u.total)}`}
            </li>
          ))}
        </ul>
      )}
      <form role="search" onSubmit={search}>
        <label>
          Search your documents
          <input name="q" type="search" />
        </label>
        <button type="submit">Search</button>
      </form>
      {results.length > 0 && (
        <ol className="results">
          {results.map((r, i) => (
            <li key={i}>
              <Link to={`/files/view?id=${r.document_id}${r.page ? `&page=${r.page}` : ""}`}>
                {r.title}
                {r.page ? `, page ${r.page}` : ""}
              </Link>
              <p>{r.text.slice(0, 240)}</p>
            </li>
          ))}
        </ol>
      )}
      {error && <p role="alert" className="error">{error}</p>}
      <table>
        <thead>
          <tr>
            <th>Title</th>
            <th>Status</th>
            <th>Category</th>
            <th>Pages</th>
            <th>Size</th>
            <th>Uploaded</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {documents.map((d) => (
            <tr key={d.id} data-status={d.status}>
              <td>
                <Link to={`/files/view?id=${d.id}`}>{d.title}</Link>
              </td>
              <td>
                {d.status === "processing" ? `processing ${Math.round(d.progress * 100)} %` : d.status}
                {d.error && <div className="error">{d.error}</div>}
              </td>
              <td>{d.category ?? ""}</td>
              <td>{d.page_count ?? ""}</td>
              <td>{bytes(d.size)}</td>
              <td>{when(d.created_at)}</td>
              <td>
                <button type="button" className="small" aria-label={`Rename ${d.title}`} onClick={() => rename(d)}>
                  Rename
                </button>
                <button type="button" className="small" aria-label={`Delete ${d.title}`} onClick={() => remove(d)}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
