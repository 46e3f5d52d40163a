import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";

import type { Me } from "../App";
import { when } from "../lib/format";
import { ApiError, session } from "../lib/session";
import type { Page } from "../lib/types";
import { errorText, reporting } from "../lib/action";

interface User {
  id: string;
  username: string;
  email: string;
  is_admin: boolean;
  is_active: boolean;
  password_reset_required?: boolean;
  created_at: string;
}

interface Audit {
  id: string;
  action: string;
  actor_id: string | null;
  target_user_id: string | null;
  details: Record<string, unknown>;
  created_at: string;
}

const PAGE = 20;

export function AdminPage({ me }: { me: Me }) {
  const [users, setUsers] = useState<Page<User>>({ items: [], total: 0 });
  const [audit, setAudit] = useState<Audit[]>([]);
  const [q, setQ] = useState("");
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState("");

  // What the table shows now, for loads started by an action (create, delete) whose closure is
  // older than the latest search; and the newest load, so a slower older one never overwrites it.
  const shown = useRef({ q, offset });
  shown.current = { q, offset };
  const newest = useRef(0);

  const load = useCallback(async () => {
    const ticket = ++newest.current;
    const { q: current, offset: at } = shown.current;
    const query = current ? `&q=${encodeURIComponent(current)}` : "";
    const page = await session.json<Page<User>>(`/admin/users?limit=${PAGE}&offset=${at}${query}`);
    const log = await session.json<Page<Audit>>("/admin/audit?limit=20");
    if (ticket !== newest.current) return;
    setUsers(page);
    setAudit(log.items);
  }, []);

  useEffect(() => {
    void load().catch((caught) => setError(errorText(caught)));
  }, [load, q, offset]);

  function change(user: User, body: Record<string, unknown>) {
    void reporting(setError, async () => {
      await session.json(`/admin/users/${user.id}`, { method: "PATCH", body });
      await load();
    }, explain);
  }

  function remove(user: User) {
    if (!window.confirm(`Delete ${user.username} and everything they stored?`)) return;
    void reporting(setError, async () => {
      await session.json(`/admin/users/${user.id}`, { method: "DELETE" });
      await load();
    }, explain);
  }

  async function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    await reporting(setError, async () => {
      await session.json("/admin/users", {
        method: "POST",
        body: {
          username: String(form.get("username")),
          email: String(form.get("email")),
          password: String(form.get("password")),
          is_admin: form.get("is_admin") === "on",
        },
      });
      formElement.reset();
      await load();
    }, explain);
  }

  return (
    <section aria-labelledby="admin">
      <h1 id="admin">Users</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <form
        role="search"
        onSubmit={(event) => {
          event.preventDefault();
          setOffset(0);
          setQ(String(new FormData(event.currentTarget).get("q")).trim());
        }}
      >
        <label>
          Find users
          <input name="q" type="search" />
        </label>
        <button type="submit">Search</button>
      </form>
      <table>
        <thead>
          <tr>
            <th>Username</th>
            <th>Email</th>
            <th>Role</th>
            <th>State</th>
            <th>Since</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {users.items.map((user) => (
            <tr key={user.id}>
              <td>{user.username}</td>
              <td>{user.email}</td>
              <td>{user.is_admin ? "admin" : "user"}</td>
              <td>
                {user.is_active ? "active" : "deactivated"}
                {user.password_reset_required && ", needs a new password"}
              </td>
              <td>{when(user.created_at)}</td>
              <td>
                <button type="button" className="small" onClick={() => change(user, { is_active: !user.is_active })}>
                  {user.is_active ? `Deactivate ${user.username}` : `Activate ${user.username}`}
                </button>
                <button
                  type="button"
                  className="small"
                  aria-label={`${user.is_admin ? "Demote" : "Promote"} ${user.username}`}
                  onClick={() => change(user, { is_admin: !user.is_admin })}
                >
                  {user.is_admin ? "Demote" : "Promote"}
                </button>
                {user.id !== me.id && (
                  <button type="button" className="small" aria-label={`Delete ${user.username}`} onClick={() => remove(user)}>
                    Delete
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p>
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Previous
        </button>{" "}
        {users.total === 0 ? 0 : offset + 1}–{Math.min(offset + PAGE, users.total)} of {users.total}{" "}
        <button type="button" disabled={offset + PAGE >= users.total} onClick={() => setOffset(offset + PAGE)}>
          Next
        </button>
      </p>
      <form className="card" onSubmit={create} aria-label="Create a user">
        <h2>Create a user</h2>
        <label>
          Username
          <input name="username" required />
        </label>
        <label>
          Email
          <input name="email" type="email" required />
        </label>
        <label>
          Password
          <input name="password" type="password" minLength={8} required />
        </label>
        <label className="inline">
          <input name="is_admin" type="checkbox" /> Admin
        </label>
        <button type="submit">Create</button>
      </form>
      <h2>Audit log</h2>
      <ul className="audit">
        {audit.map((entry) => (
          <li key={entry.id}>
            {when(entry.created_at)}: {entry.action} {JSON.stringify(entry.details)}
          </li>
        ))}
      </ul>
    </section>
  );
}

function explain(error: unknown): string {
  if (error instanceof ApiError && error.status === 409 && /admin/i.test(error.message)) {
    return `${error.message} Promote another user to admin first.`;
  }
  return errorText(error);
}
