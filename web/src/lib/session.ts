/** The browser session: the access token lives in memory only; the refresh token is an
 * HttpOnly cookie the auth service sets and JavaScript never sees. The session refreshes
 * shortly before the access token expires, and once after a 401, then signs out cleanly if
 * the refresh is refused. Concurrent callers share one refresh. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

/** The API's error envelope ({"error": {"code", "message"}}) as an ApiError. */
export async function apiError(response: Response): Promise<ApiError> {
  let code = "http_error";
  let message = `The server answered ${response.status}`;
  try {
    const body = await response.json();
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? message;
  } catch {
    // not JSON: keep the generic message
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, code, message, retry ? Number(retry) : null);
}

interface TokenResponse {
  access_token: string;
  expires_in: number;
}

const REFRESH_MARGIN_SECONDS = 30;
// Asks the auth service to put the refresh token in its HttpOnly cookie instead of the body.
export const COOKIE_SESSION_HEADER = "X-Refresh-Cookie";

export class Session {
  private token: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private listeners = new Set<(signedIn: boolean) => void>();

  constructor(private readonly fetcher: typeof fetch = (input, init) => fetch(input, init)) {}

  get signedIn(): boolean {
    return this.token !== null;
  }

  onChange(listener: (signedIn: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async signIn(username: string, password: string): Promise<void> {
    const response = await this.fetcher("/auth/token", {
      method: "POST",
      credentials: "same-origin",
      headers: { [COOKIE_SESSION_HEADER]: "1" },
      body: new URLSearchParams({ username, password }),
    });
    if (!response.ok) throw await apiError(response);
    this.accept(await response.json());
  }

  /** A new access token from the refresh cookie; false (and signed out) when refused. */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    try {
      const response = await this.fetcher("/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
        headers: { [COOKIE_SESSION_HEADER]: "1" },
      });
      if (response.ok) {
        this.accept(await response.json());
        return true;
      }
    } catch {
      // network failure: treated as a refused refresh
    }
    this.clear();
    return false;
  }

  /** fetch() with the access token; after a 401, one refresh and one retry. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const send = () =>
      this.fetcher(path, {
        ...init,
        credentials: "same-origin",
        headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${this.token ?? ""}` },
      });
    const response = await send();
    if (response.status !== 401 || !this.token) {
      if (response.status === 401) this.clear();
      return response;
    }
    return (await this.refresh()) ? send() : response;
  }

  /** JSON in, JSON out; API errors thrown as ApiError. */
  async json<T>(path: string, init: Omit<RequestInit, "body"> & { body?: unknown } = {}): Promise<T> {
    const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
    let body = init.body as BodyInit | undefined;
    if (init.body !== undefined && !(init.body instanceof FormData) && typeof init.body !== "string") {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(init.body);
    }
    const response = await this.request(path, { ...init, headers, body });
    if (!response.ok) throw await apiError(response);
    return response.status === 204 ? (undefined as T) : ((await response.json()) as T);
  }

  accessToken(): string | null {
    return this.token;
  }

  async signOut(): Promise<void> {
    try {
      await this.fetcher("/auth/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { [COOKIE_SESSION_HEADER]: "1" },
      });
    } finally {
      this.clear();
    }
  }

  private accept(tokens: TokenResponse): void {
    const wasSignedIn = this.signedIn;
    this.token = tokens.access_token;
    clearTimeout(this.timer);
    const delay = Math.max(5, tokens.expires_in - REFRESH_MARGIN_SECONDS) * 1000;
    this.timer = setTimeout(() => void this.refresh(), delay);
    if (!wasSignedIn) this.listeners.forEach((listener) => listener(true));
  }

  private clear(): void {
    const wasSignedIn = this.signedIn;
    this.token = null;
    clearTimeout(this.timer);
    if (wasSignedIn) this.listeners.forEach((listener) => listener(false));
  }
}

export const session = new Session();
