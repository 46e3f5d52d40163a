import { Link } from "react-router-dom";

import { type Source, segments, sourceHref, sourceLabel } from "../lib/citations";
import { STATUS_TEXT, warningText } from "../lib/format";

/** An answer with its citations as links, its warnings in plain words, and its sources. */
export function Answer({
  answer,
  sources,
  warnings = [],
  status,
}: {
  answer: string;
  sources: Source[];
  warnings?: string[];
  status?: string;
}) {
  return (
    <div className="answer">
      <p className="answer-text">
        {segments(answer, sources).map((segment, index) =>
          "text" in segment ? (
            <span key={index}>{segment.text}</span>
          ) : segment.source ? (
            <Link key={index} className="cite" to={sourceHref(segment.source)} title={sourceLabel(segment.source)}>
              [{segment.cite}]
            </Link>
          ) : (
            <span key={index}>[{segment.cite}]</span>
          ),
        )}
      </p>
      {status && STATUS_TEXT[status] && <p className="notice">{STATUS_TEXT[status]}</p>}
      {warnings.map((warning) => (
        <p key={warning} className="notice">
          {warningText(warning)}
        </p>
      ))}
      {sources.length > 0 && (
        <details className="sources">
          <summary>Sources ({sources.length})</summary>
          <ol>
            {sources.map((source) => (
              <li key={source.n} value={source.n}>
                <Link to={sourceHref(source)}>{sourceLabel(source)}</Link>
                {source.available === false && <em> (deleted since)</em>}
                <blockquote>{source.quote}</blockquote>
              </li>
            ))}
          </ol>
        </details>
      )}
    </div>
  );
}
