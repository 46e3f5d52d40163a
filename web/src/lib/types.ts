/** The API's shapes the pages use (see /openapi.json for all of them). */
import type { Source } from "./citations";

export interface Query {
  id: string;
  conversation_id: string;
  question: string;
  answer: string;
  status: "complete" | "incomplete" | "no_sources" | "failed";
  citations: Source[];
  sources: Source[];
  warnings: string[];
  created_at: string;
  feedback: { rating: "up" | "down"; comment: string | null } | null;
}

export interface Conversation {
  id: string;
  title: string;
  updated_at: string;
  query_count: number;
}

export interface Page<T> {
  items: T[];
  total: number;
}

export interface Document {
  id: string;
  title: string;
  filename: string;
  mime_type: string;
  size: number;
  category: string | null;
  status: "queued" | "processing" | "ready" | "failed";
  progress: number;
  page_count: number | null;
  error: string | null;
  created_at: string;
}
