import { useState } from "react";

import { ApiError } from "./session";

/** What a failed call tells the user: the API's own message (with the wait after a 429), or
 * that the server could not be reached. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429 && error.retryAfterSeconds) {
      return `${error.message}. Try again in ${error.retryAfterSeconds} seconds.`;
    }
    return error.message;
  }
  return "The server could not be reached. Try again.";
}

/** Run an action whose refusal belongs in the page's alert: the old error cleared first, a new
 * one shown in plain words (``explain`` picks the words), never an unhandled rejection. */
export async function reporting(
  setError: (message: string) => void,
  action: () => Promise<unknown>,
  explain: (error: unknown) => string = errorText,
): Promise<void> {
  setError("");
  try {
    await action();
  } catch (caught) {
    setError(explain(caught));
  }
}

/** A form's submit: busy while it runs, its error shown in plain words, cleared on the next try. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  async function run(action: () => Promise<void>): Promise<void> {
    setBusy(true);
    try {
      await reporting(setError, action);
    } finally {
      setBusy(false);
    }
  }

  return { busy, error, run };
}
