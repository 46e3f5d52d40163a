import { type FormEvent, useState } from "react";

import type { Me } from "../App";
import { useAction } from "../lib/action";
import { session } from "../lib/session";

export function AccountPage({ me, onChange }: { me: Me; onChange: (me: Me) => void }) {
  const [message, setMessage] = useState("");
  const { error, run } = useAction();

  async function profile(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const body: Record<string, string> = { username: String(form.get("username")) };
    const email = String(form.get("email"));
    if (email !== me.email) {
      body.email = email;
      body.current_password = String(form.get("current_password"));
    }
    await run(async () => {
      onChange(await session.json<Me>("/auth/me", { method: "PATCH", body }));
      setMessage("Profile saved.");
    });
  }

  async function password(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    await run(async () => {
      await session.json("/auth/me/password", {
        method: "POST",
        body: { current_password: String(form.get("current")), new_password: String(form.get("new")) },
      });
      formElement.reset();
      setMessage("Password changed. Your other sessions are signed out.");
    });
  }

  return (
    <section aria-labelledby="account">
      <h1 id="account">Account</h1>
      {message && <p className="notice">{message}</p>}
      {error && <p role="alert" className="error">{error}</p>}
      <form className="card" onSubmit={profile} aria-label="Profile">
        <label>
          Username
          <input name="username" defaultValue={me.username} required />
        </label>
        <label>
          Email
          <input name="email" type="email" defaultValue={me.email} required />
        </label>
        <label>
          Current password (to change the email)
          <input name="current_password" type="password" autoComplete="current-password" />
        </label>
        <button type="submit">Save profile</button>
      </form>
      <form className="card" onSubmit={password} aria-label="Change password">
        <label>
          Current password
          <input name="current" type="password" autoComplete="current-password" required />
        </label>
        <label>
          New password
          <input name="new" type="password" autoComplete="new-password" minLength={8} required />
        </label>
        <button type="submit">Change password</button>
      </form>
      <button type="button" onClick={() => void session.signOut()}>
        Sign out
      </button>
    </section>
  );
}
