import { describe, expect, it } from "vitest";

import { errorText, reporting } from "./action";
import { ApiError } from "./session";

describe("errorText", () => {
  it("shows the API's message, with the wait after a 429", () => {
    expect(errorText(new ApiError(409, "conflict", "That username is taken"))).toBe("That username is taken");
    expect(errorText(new ApiError(429, "rate_limited", "Too many attempts", 30))).toBe(
      "Too many attempts. Try again in 30 seconds.",
    );
  });

  it("says the server could not be reached for anything else", () => {
    expect(errorText(new TypeError("Failed to fetch"))).toBe("The server could not be reached. Try again.");
  });
});

describe("reporting", () => {
  it("clears the old error, then shows a refusal in the chosen words instead of rejecting", async () => {
    const shown: string[] = [];
    await reporting((message) => shown.push(message), async () => {
      throw new ApiError(422, "invalid", "Title too long");
    });
    expect(shown).toEqual(["", "Title too long"]);
    await reporting((message) => shown.push(message), async () => {
      throw new ApiError(409, "conflict", "Last admin");
    }, (error) => `explained: ${(error as ApiError).message}`);
    expect(shown.slice(2)).toEqual(["", "explained: Last admin"]);
  });

  it("leaves the error empty when the action succeeds", async () => {
    const shown: string[] = [];
    await reporting((message) => shown.push(message), async () => undefined);
    expect(shown).toEqual([""]);
  });
});
