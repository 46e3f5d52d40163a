import { type FormEvent, useCallback, useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";

import { when } from "../lib/format";
import { apiError, session } from "../lib/session";
import type { Page } from "../lib/types";
import { errorText } from "../lib/action";

interface Account {
  id: string;
  address: string;
  status: "active" | "syncing" | "needs_reauth" | "error";
  sync_enabled: boolean;
  last_sync_at: string | null;
  last_error: string | null;
}

interface SyncRun {
  state: "queued" | "running" | "succeeded" | "failed";
  processed: number;
  total: number | null;
}

interface Email {
  id: string;
  subject: string;
  sender_address?: string | null;
  sender?: string | null;
  sent_at: string | null;
  snippet?: string;
  body_text?: string;
  attachments?: { id: string; filename: string; size: number }[];
}

const CONNECT_ERRORS: Record<string, string> = {
  access_denied: "Google access was not granted, so nothing was connected.",
  missing_scope: "Gmail read access was not granted; connect again and allow it.",
};

export function MailPage() {
  const [params, setParams] = useSearchParams();
  const [accounts, setAccounts] = useState<Account[]>([]);
  const [emails, setEmails] = useState<Email[]>([]);
  const [reading, setReading] = useState<Email | null>(null);
  const [runs, setRuns] = useState<Record<string, SyncRun>>({});
  const [filters, setFilters] = useState("");
  const [error, setError] = useState("");
  const connected = params.get("mail_connected");
  const connectError = params.get("mail_error");

  const loadAccounts = useCallback(async () => {
    const items = (await session.json<{ items: Account[] }>("/mail/accounts")).items;
    setAccounts(items);
    // Progress of the syncs under way (messages stored so far, of how many).
    const syncing = items.filter((account) => account.status === "syncing");
    const progress = await Promise.all(
      syncing.map((account) => session.json<SyncRun>(`/mail/accounts/${account.id}/sync`).catch(() => null)),
    );
    setRuns(Object.fromEntries(syncing.flatMap((account, i) => (progress[i] ? [[account.id, progress[i]]] : []))));
  }, []);
  const loadEmails = useCallback(async () => {
    setEmails((await session.json<Page<Email>>(`/mail/emails?limit=50${filters}`)).items);
  }, [filters]);

  useEffect(() => {
    void loadAccounts().catch((caught) => setError(errorText(caught)));
    const timer = setInterval(() => void loadAccounts().catch(() => undefined), 3000);
    return () => clearInterval(timer);
  }, [loadAccounts]);
  // The list follows the accounts: reloaded when one is added or finishes a sync.
  const synced = accounts.map((account) => `${account.id}:${account.last_sync_at}`).join(",");
  useEffect(() => {
    void loadEmails().catch((caught) => setError(errorText(caught)));
  }, [loadEmails, synced]);
  useEffect(() => {
    const id = params.get("email");
    if (!id) return;
    session
      .json<Email>(`/mail/emails/${id}`)
      .then(setReading)
      .catch((caught) => setError(errorText(caught)));
  }, [params]);

  async function connect() {
    try {
      const { authorization_url } = await session.json<{ authorization_url: string }>("/mail/accounts/gmail/connect", {
        method: "POST",
      });
      window.location.assign(authorization_url);
    } catch (caught) {
      setError(errorText(caught));
    }
  }

  async function act(account: Account, action: "sync" | "toggle" | "disconnect") {
    try {
      if (action === "sync") await session.json(`/mail/accounts/${account.id}/sync`, { method: "POST" });
      if (action === "toggle")
        await session.json(`/mail/accounts/${account.id}`, { method: "PATCH", body: { sync_enabled: !account.sync_enabled } });
      if (action === "disconnect") {
        if (!window.confirm(`Disconnect ${account.address}? Its mail is removed from this app.`)) return;
        await session.json(`/mail/accounts/${account.id}`, { method: "DELETE" });
      }
      await loadAccounts();
    } catch (caught) {
      setError(errorText(caught));
    }
  }

  function filter(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const query = new URLSearchParams();
    for (const [name, value] of form.entries()) if (String(value)) query.set(name, String(value));
    setFilters(query.toString() ? `&${query}` : "");
  }

  async function download(email: Email, attachment: { id: string; filename: string }) {
    const response = await session.request(`/mail/emails/${email.id}/attachments/${attachment.id}`);
    if (!response.ok) return setError(errorText(await apiError(response)));
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = attachment.filename;
    link.click();
  }

  return (
    <section aria-labelledby="mail">
      <h1 id="mail">Mail</h1>
      {connected && <p className="notice">Connected {connected}. Its mail is being synced.</p>}
      {connectError && (
        <p role="alert" className="error">
          {CONNECT_ERRORS[connectError] ?? `Gmail could not be connected (${connectError}).`}
        </p>
      )}
      {error && <p role="alert" className="error">{error}</p>}
      <button type="button" onClick={() => void connect()}>
        Connect Gmail
      </button>
      <ul className="accounts" aria-label="Mail accounts">
        {accounts.map((account) => (
          <li key={account.id}>
            <strong>{account.address}</strong> — {account.status === "needs_reauth" ? "needs to be connected again" : account.status}
            {runs[account.id] &&
              `: ${runs[account.id].processed}${runs[account.id].total ? ` of ${runs[account.id].total}` : ""} messages`}
            {account.last_sync_at && `, last synced ${when(account.last_sync_at)}`}
            {account.last_error && <div className="error">{account.last_error}</div>}
            {account.status === "needs_reauth" ? (
              <button type="button" onClick={() => void connect()}>
                Reconnect
              </button>
            ) : (
              <button type="button" onClick={() => void act(account, "sync")}>
                Sync now
              </button>
            )}
            <button type="button" onClick={() => void act(account, "toggle")}>
              {account.sync_enabled ? "Pause syncing" : "Resume syncing"}
            </button>
            <button type="button" onClick={() => void act(account, "disconnect")}>
              Disconnect
            </button>
          </li>
        ))}
      </ul>
      <form className="filters" onSubmit={filter} aria-label="Filter emails">
        <label>
          Text
          <input name="q" type="search" />
        </label>
        <label>
          Sender
          <input name="sender" />
        </label>
        <label>
          Type
          <select name="type" defaultValue="">
            <option value="">any</option>
            {["business", "personal", "promotional", "transactional", "support", "generic"].map((type) => (
              <option key={type}>{type}</option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <div className="mail">
        <ul className="emails" aria-label="Emails">
          {emails.map((email) => (
            <li key={email.id}>
              <button type="button" className="link" onClick={() => setParams({ email: email.id })}>
                <strong>{email.subject || "(no subject)"}</strong> {email.sender_address ?? ""} <time>{when(email.sent_at)}</time>
              </button>
            </li>
          ))}
        </ul>
        {reading && (
          <article className="reader" aria-label="Email">
            <h2>{reading.subject || "(no subject)"}</h2>
            <p>
              {reading.sender_address} — {when(reading.sent_at)}
            </p>
            <pre>{reading.body_text}</pre>
            {(reading.attachments ?? []).map((attachment) => {
              const cited = attachment.id === params.get("attachment"); // a citation led here
              return (
                <button
                  key={attachment.id}
                  type="button"
                  className={cited ? "cited" : undefined}
                  aria-describedby={cited ? "cited-attachment" : undefined}
                  autoFocus={cited}
                  onClick={() => void download(reading, attachment)}
                >
                  {attachment.filename}
                </button>
              );
            })}
            {params.get("attachment") && (
              <p id="cited-attachment" className="notice">
                The answer cites this attachment: open it to read the passage.
              </p>
            )}
          </article>
        )}
      </div>
    </section>
  );
}
