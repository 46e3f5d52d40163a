import { type FormEvent, useEffect, useState } from "react";

import { when } from "../lib/format";
import { session } from "../lib/session";
import type { Page, Query } from "../lib/types";
import { Answer } from "./Answer";
import { errorText } from "../lib/action";

export function HistoryPage() {
  const [q, setQ] = useState("");
  const [page, setPage] = useState<Page<Query>>({ items: [], total: 0 });
  const [error, setError] = useState("");

  useEffect(() => {
    const query = q ? `&q=${encodeURIComponent(q)}` : "";
    session
      .json<Page<Query>>(`/queries?limit=50${query}`)
      .then(setPage)
      .catch((caught) => setError(errorText(caught)));
  }, [q]);

  function search(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    setQ(String(new FormData(event.currentTarget).get("q")).trim());
  }

  return (
    <section aria-labelledby="history">
      <h1 id="history">History</h1>
      <form role="search" onSubmit={search}>
        <label>
          Search past questions and answers
          <input name="q" type="search" />
        </label>
        <button type="submit">Search</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <p>{page.total} questions</p>
      {page.items.map((query) => (
        <article key={query.id} className="turn">
          <h2 className="question">{query.question}</h2>
          <time>{when(query.created_at)}</time>
          <Answer answer={query.answer} sources={query.sources} warnings={query.warnings} status={query.status} />
        </article>
      ))}
    </section>
  );
}
