/** An answer the API refused, with its application/problem+json fields (RFC 9457). */
export class ProblemError extends Error {
  /** stable URI naming the kind of problem */
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  /** members beyond RFC 9457's: 402's `available`, 422's `errors`, … */
  readonly extra: Record<string, unknown>;
  readonly headers: Headers;

  constructor(fields: {
    type: string;
    title: string;
    status: number;
    detail: string;
    extra?: Record<string, unknown>;
    headers?: Headers;
  }) {
    super(`${fields.status} ${fields.title}: ${fields.detail}`);
    this.name = "ProblemError";
    this.type = fields.type;
    this.title = fields.title;
    this.status = fields.status;
    this.detail = fields.detail;
    this.extra = fields.extra ?? {};
    this.headers = fields.headers ?? new Headers();
  }

  /** the type's last segment: `insufficient-credits`, `not-found`, … */
  get slug(): string {
    return this.type.replace(/\/+$/, "").split("/").pop() ?? this.type;
  }

  /** What an answer describes; one that is not problem+json still gives a ProblemError. */
  static fromAnswer(status: number, headers: Headers, text: string): ProblemError {
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      const detail = text.trim().slice(0, 500) || `the API answered ${status}`;
      return new ProblemError({ type: "about:blank", title: `HTTP ${status}`, status, detail, headers });
    }
    const { type, title, status: said, detail, ...extra } = parsed as Record<string, unknown>;
    return new ProblemError({
      type: typeof type === "string" && type ? type : "about:blank",
      title: typeof title === "string" && title ? title : `HTTP ${status}`,
      status: typeof said === "number" ? said : status,
      detail: typeof detail === "string" ? detail : "",
      extra,
      headers,
    });
  }
}

/** The client lacks what a call needs (an API key, an admin token, an account). */
export class ClientConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClientConfigError";
  }
}
