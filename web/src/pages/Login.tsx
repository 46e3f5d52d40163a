import type { FormEvent } from "react";
import { Link, useNavigate } from "react-router-dom";

import { useAction } from "../lib/action";
import { apiError, session } from "../lib/session";

export function LoginPage() {
  const { busy, error, run } = useAction();
  const navigate = useNavigate();

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    await run(async () => {
      await session.signIn(String(form.get("username")), String(form.get("password")));
      navigate("/ask");
    });
  }

  return (
    <form className="card" onSubmit={submit} aria-labelledby="sign-in">
      <h1 id="sign-in">Sign in</h1>
      <label>
        Username or email
        <input name="username" autoComplete="username" required />
      </label>
      <label>
        Password
        <input name="password" type="password" autoComplete="current-password" required />
      </label>
      {error && <p role="alert" className="error">{error}</p>}
      <button type="submit" disabled={busy}>
        Sign in
      </button>
      <p>
        No account? <Link to="/register">Register</Link>
      </p>
    </form>
  );
}

export function RegisterPage() {
  const { busy, error, run } = useAction();
  const navigate = useNavigate();

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const account = {
      email: String(form.get("email")),
      username: String(form.get("username")),
      password: String(form.get("password")),
    };
    await run(async () => {
      const response = await fetch("/auth/register", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(account),
      });
      if (!response.ok) throw await apiError(response);
      await session.signIn(account.username, account.password);
      navigate("/ask");
    });
  }

  return (
    <form className="card" onSubmit={submit} aria-labelledby="register">
      <h1 id="register">Create an account</h1>
      <label>
        Email
        <input name="email" type="email" autoComplete="email" required />
      </label>
      <label>
        Username
        <input name="username" autoComplete="username" required />
      </label>
      <label>
        Password
        <input name="password" type="password" autoComplete="new-password" minLength={8} required />
      </label>
      {error && <p role="alert" className="error">{error}</p>}
      <button type="submit" disabled={busy}>
        Register
      </button>
      <p>
        Already registered? <Link to="/login">Sign in</Link>
      </p>
    </form>
  );
}
