import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";

import type { Source } from "../lib/citations";
import { readEvents } from "../lib/sse";
import { apiError, session } from "../lib/session";
import type { Conversation, Page, Query } from "../lib/types";
import { Answer } from "./Answer";
import { errorText, reporting } from "../lib/action";

interface Live {
  question: string;
  text: string;
  sources: Source[];
  error: string;
}

export function AskPage() {
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [current, setCurrent] = useState<string | null>(null);
  const [queries, setQueries] = useState<Query[]>([]);
  const [live, setLive] = useState<Live | null>(null);
  const [error, setError] = useState("");
  const stop = useRef<AbortController | null>(null);
  // The conversation a stream just started: its turns are on screen already (the live one).
  const streamed = useRef<string | null>(null);

  const loadConversations = useCallback(async () => {
    const page = await session.json<Page<Conversation>>("/conversations?limit=50");
    setConversations(page.items);
  }, []);

  useEffect(() => {
    void loadConversations().catch((caught) => setError(errorText(caught)));
  }, [loadConversations]);

  useEffect(() => {
    if (!current) {
      setQueries([]);
      return;
    }
    if (current === streamed.current) return;
    session
      .json<Page<Query>>(`/queries?conversation_id=${current}&limit=100`)
      .then((page) => setQueries([...page.items].reverse()))
      .catch((caught) => setError(errorText(caught)));
  }, [current]);

  async function ask(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const question = String(form.get("question")).trim();
    if (!question) return;
    const scope = String(form.get("scope"));
    const body: Record<string, unknown> = {
      question,
      sources: scope === "both" ? ["documents", "mail"] : [scope],
    };
    if (current) body.conversation_id = current;
    for (const name of ["after", "before"]) {
      const value = String(form.get(name) ?? "");
      if (value) body[name] = new Date(value).toISOString();
    }
    setError("");
    setLive({ question, text: "", sources: [], error: "" });
    stop.current = new AbortController();
    try {
      const response = await session.request("/queries", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
        signal: stop.current.signal,
      });
      if (!response.ok || !response.body) throw await apiError(response);
      formElement.reset();
      for await (const item of readEvents(response.body)) {
        const data = JSON.parse(item.data);
        if (item.event === "query") {
          streamed.current = data.conversation_id;
          setCurrent(data.conversation_id);
        }
        else if (item.event === "sources") setLive((l) => l && { ...l, sources: data.sources ?? data });
        else if (item.event === "delta") setLive((l) => l && { ...l, text: l.text + data.text });
        else if (item.event === "error") setLive((l) => l && { ...l, error: data.message });
        else if (item.event === "done") {
          setQueries((before) => [...before.filter((q) => q.id !== data.id), data as Query]);
          setLive(null);
        }
      }
      void loadConversations();
    } catch (caught) {
      if ((caught as Error).name !== "AbortError") setError(errorText(caught));
      setLive(null);
    }
  }

  function choose(conversation: string | null) {
    streamed.current = null;
    setCurrent(conversation);
  }

  function rename(conversation: Conversation) {
    const title = window.prompt("New name", conversation.title);
    if (!title) return;
    void reporting(setError, async () => {
      await session.json(`/conversations/${conversation.id}`, { method: "PATCH", body: { title } });
      await loadConversations();
    });
  }

  function remove(conversation: Conversation) {
    if (!window.confirm(`Delete “${conversation.title}” and its answers?`)) return;
    void reporting(setError, async () => {
      await session.json(`/conversations/${conversation.id}`, { method: "DELETE" });
      if (current === conversation.id) choose(null);
      await loadConversations();
    });
  }

  function rate(query: Query, rating: "up" | "down") {
    void reporting(setError, async () => {
      const updated = await session.json<Query>(`/queries/${query.id}/feedback`, { method: "POST", body: { rating } });
      setQueries((before) => before.map((q) => (q.id === updated.id ? updated : q)));
    });
  }

  return (
    <div className="ask">
      <aside aria-label="Conversations">
        <button type="button" onClick={() => choose(null)}>
          New conversation
        </button>
        <ul>
          {conversations.map((conversation) => (
            <li key={conversation.id} className={conversation.id === current ? "current" : ""}>
              <button type="button" className="link" onClick={() => choose(conversation.id)}>
                {conversation.title}
              </button>
              <button type="button" className="small" aria-label={`Rename ${conversation.title}`} onClick={() => rename(conversation)}>
                ✎
              </button>
              <button type="button" className="small" aria-label={`Delete ${conversation.title}`} onClick={() => remove(conversation)}>
                ✕
              </button>
            </li>
          ))}
        </ul>
      </aside>
      <section aria-label="Answers">
        {queries.map((query) => (
          <article key={query.id} className="turn">
            <h2 className="question">{query.question}</h2>
            <Answer answer={query.answer} sources={query.sources} warnings={query.warnings} status={query.status} />
            <div className="feedback" role="group" aria-label="Was this answer useful?">
              <button type="button" aria-pressed={query.feedback?.rating === "up"} onClick={() => rate(query, "up")}>
                Helpful
              </button>
              <button type="button" aria-pressed={query.feedback?.rating === "down"} onClick={() => rate(query, "down")}>
                Not helpful
              </button>
            </div>
          </article>
        ))}
        {live && (
          <article className="turn live" aria-live="polite">
            <h2 className="question">{live.question}</h2>
            <Answer answer={live.text} sources={live.sources} />
            {live.error && <p role="alert" className="error">{live.error}</p>}
            <button type="button" onClick={() => stop.current?.abort()}>
              Stop
            </button>
          </article>
        )}
        {error && <p role="alert" className="error">{error}</p>}
        <form className="ask-form" onSubmit={ask}>
          <label>
            Your question
            <textarea name="question" rows={3} required maxLength={10000} />
          </label>
          <div className="filters">
            <label>
              Search
              <select name="scope" defaultValue="both">
                <option value="both">documents and mail</option>
                <option value="documents">documents only</option>
                <option value="mail">mail only</option>
              </select>
            </label>
            <label>
              From
              <input type="date" name="after" />
            </label>
            <label>
              Until
              <input type="date" name="before" />
            </label>
          </div>
          <button type="submit" disabled={live !== null}>
            Ask
          </button>
        </form>
      </section>
    </div>
  );
}
