import { describe, expect, it } from "vitest";

import { SseParser, readEvents } from "./sse";

describe("SseParser", () => {
  it("reads named events split anywhere across chunks", () => {
    const parser = new SseParser();
    const stream = 'event: query\ndata: {"id":"q"}\n\n: ping\n\nevent: delta\r\ndata: {"text":"Hel"}\r\n\r\nevent: delta\ndata: {"text":"lo"}\n\n';
    const events = [];
    for (let at = 0; at < stream.length; at += 5) events.push(...parser.feed(stream.slice(at, at + 5)));
    expect(events).toEqual([
      { event: "query", data: '{"id":"q"}' },
      { event: "delta", data: '{"text":"Hel"}' },
      { event: "delta", data: '{"text":"lo"}' },
    ]);
  });

  it("joins multi-line data and defaults the event name", () => {
    expect(new SseParser().feed("data: a\ndata: b\n\n")).toEqual([{ event: "message", data: "a\nb" }]);
  });

  it("reads a response body, multi-byte characters split between chunks included", async () => {
    const bytes = new TextEncoder().encode('event: delta\ndata: {"text":"café"}\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 30));
        controller.enqueue(bytes.slice(30));
        controller.close();
      },
    });
    const events = [];
    for await (const event of readEvents(body)) events.push(event);
    expect(events).toEqual([{ event: "delta", data: '{"text":"café"}' }]);
  });
});
