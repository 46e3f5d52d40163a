import { describe, expect, it } from "vitest";

import { errorText } from "./action";
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
