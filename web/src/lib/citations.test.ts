import { describe, expect, it } from "vitest";

import { segments, sourceHref, type Source } from "./citations";

const pdf: Source = { n: 1, kind: "document", document_id: "d1", title: "Lease", page: 2, quote: "rent is due", text: "" };
const mail: Source = { n: 2, kind: "email", email_id: "e1", subject: "Hi", quote: "q", text: "" };

describe("citations", () => {
  it("splits an answer into text and citations, grouped markers included", () => {
    expect(segments("Rent is due monthly [1]. Both agree [1, 2].", [pdf, mail])).toEqual([
      { text: "Rent is due monthly " },
      { cite: 1, source: pdf },
      { text: ". Both agree " },
      { cite: 1, source: pdf },
      { cite: 2, source: mail },
      { text: "." },
    ]);
  });

  it("keeps a number no source has as a citation without a source", () => {
    expect(segments("x [7]", [pdf])).toEqual([{ text: "x " }, { cite: 7, source: undefined }]);
  });

  it("links a document at its page with the quote, an email to the reader", () => {
    expect(sourceHref(pdf)).toBe("/files/view?id=d1&page=2&quote=rent%20is%20due");
    expect(sourceHref(mail)).toBe("/inbox?email=e1");
  });
});
