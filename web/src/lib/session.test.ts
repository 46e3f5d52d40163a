import { afterEach, describe, expect, it, vi } from "vitest";

import { ApiError, Session } from "./session";

function reply(status: number, body: unknown = {}, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

afterEach(() => vi.useRealTimers());

describe("Session", () => {
  it("keeps the access token in memory and asks for the refresh token as a cookie", async () => {
    const fetcher = vi.fn().mockResolvedValueOnce(reply(200, { access_token: "a1", expires_in: 900 }));
    const session = new Session(fetcher);
    await session.signIn("ada", "pw");
    expect(session.accessToken()).toBe("a1");
    const [, init] = fetcher.mock.calls[0];
    expect(init.headers["X-Refresh-Cookie"]).toBe("1");
    expect(String(init.body)).toBe("username=ada&password=pw");
  });

  it("refreshes once after a 401 and retries with the new token", async () => {
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce(reply(200, { access_token: "old", expires_in: 900 }))
      .mockResolvedValueOnce(reply(401, { error: { code: "invalid_token", message: "expired" } }))
      .mockResolvedValueOnce(reply(200, { access_token: "new", expires_in: 900 }))
      .mockResolvedValueOnce(reply(200, { ok: true }));
    const session = new Session(fetcher);
    await session.signIn("ada", "pw");
    expect(await session.json("/auth/me")).toEqual({ ok: true });
    expect(fetcher.mock.calls[2][0]).toBe("/auth/refresh");
    expect(fetcher.mock.calls[3][1].headers.Authorization).toBe("Bearer new");
  });

  it("shares one refresh between concurrent callers", async () => {
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce(reply(200, { access_token: "t", expires_in: 900 }))
      .mockResolvedValue(reply(200, { access_token: "t2", expires_in: 900 }));
    const session = new Session(fetcher);
    await session.signIn("ada", "pw");
    await Promise.all([session.refresh(), session.refresh(), session.refresh()]);
    expect(fetcher.mock.calls.filter(([path]) => path === "/auth/refresh")).toHaveLength(1);
  });

  it("signs out when the refresh is refused, and says so once", async () => {
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce(reply(200, { access_token: "t", expires_in: 900 }))
      .mockResolvedValueOnce(reply(401, {}))
      .mockResolvedValueOnce(reply(401, { error: { code: "invalid_refresh_token", message: "no" } }));
    const session = new Session(fetcher);
    const changes: boolean[] = [];
    session.onChange((signedIn) => changes.push(signedIn));
    await session.signIn("ada", "pw");
    const response = await session.request("/auth/me");
    expect(response.status).toBe(401);
    expect(session.signedIn).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it("refreshes on its own shortly before the access token expires", async () => {
    vi.useFakeTimers();
    const fetcher = vi
      .fn()
      .mockResolvedValueOnce(reply(200, { access_token: "t", expires_in: 60 }))
      .mockResolvedValueOnce(reply(200, { access_token: "t2", expires_in: 60 }));
    const session = new Session(fetcher);
    await session.signIn("ada", "pw");
    await vi.advanceTimersByTimeAsync(29_000);
    expect(fetcher).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(fetcher.mock.calls[1][0]).toBe("/auth/refresh");
    expect(session.accessToken()).toBe("t2");
  });

  it("turns the error envelope into an ApiError with the wait of a 429", async () => {
    const fetcher = vi.fn().mockResolvedValueOnce(
      reply(429, { error: { code: "too_many_attempts", message: "Too many" } }, { "Retry-After": "42" }),
    );
    const error = await new Session(fetcher).signIn("ada", "pw").catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect([error.status, error.code, error.retryAfterSeconds]).toEqual([429, "too_many_attempts", 42]);
  });
});
