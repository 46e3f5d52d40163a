import { useEffect, useState } from "react";
import { Navigate, NavLink, Route, Routes, useNavigate } from "react-router-dom";

import { session } from "./lib/session";
import { AccountPage } from "./pages/Account";
import { AdminPage } from "./pages/Admin";
import { AskPage } from "./pages/Ask";
import { DocumentsPage } from "./pages/Documents";
import { DocumentViewPage } from "./pages/DocumentView";
import { HistoryPage } from "./pages/History";
import { LoginPage, RegisterPage } from "./pages/Login";
import { MailPage } from "./pages/Mail";

export interface Me {
  id: string;
  username: string;
  email: string;
  is_admin: boolean;
}

// How often an open app checks that its session still stands (a deactivated user is signed
// out within this many seconds).
const SESSION_CHECK_MS = 5000;

export function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [ready, setReady] = useState(false);
  const navigate = useNavigate();

  useEffect(() => {
    const load = async () => {
      try {
        setMe(await session.json<Me>("/auth/me"));
      } catch {
        setMe(null);
      }
    };
    const unsubscribe = session.onChange((signedIn) => {
      if (signedIn) void load();
      else {
        setMe(null);
        navigate("/login");
      }
    });
    // A reload keeps the session: the refresh cookie gives a new access token.
    void session.refresh().finally(() => setReady(true));
    const check = setInterval(() => {
      if (session.signedIn) void session.request("/auth/me");
    }, SESSION_CHECK_MS);
    return () => {
      unsubscribe();
      clearInterval(check);
    };
  }, [navigate]);

  if (!ready) return <p className="loading">Loading…</p>;
  if (!me) {
    return (
      <main className="auth">
        <Routes>
          <Route path="/register" element={<RegisterPage />} />
          <Route path="*" element={<LoginPage />} />
        </Routes>
      </main>
    );
  }
  return (
    <div className="shell">
      <nav aria-label="Main">
        <strong className="brand">Assistant</strong>
        <NavLink to="/ask">Ask</NavLink>
        <NavLink to="/files">Documents</NavLink>
        <NavLink to="/inbox">Mail</NavLink>
        <NavLink to="/history">History</NavLink>
        <NavLink to="/account">Account</NavLink>
        {me.is_admin && <NavLink to="/manage">Admin</NavLink>}
        <button type="button" className="link" onClick={() => void session.signOut()}>
          Sign out
        </button>
      </nav>
      <main>
        <Routes>
          <Route path="/ask" element={<AskPage />} />
          <Route path="/files" element={<DocumentsPage />} />
          <Route path="/files/view" element={<DocumentViewPage />} />
          <Route path="/inbox" element={<MailPage />} />
          <Route path="/history" element={<HistoryPage />} />
          <Route path="/account" element={<AccountPage me={me} onChange={setMe} />} />
          {me.is_admin && <Route path="/manage" element={<AdminPage me={me} />} />}
          <Route path="*" element={<Navigate to="/ask" replace />} />
        </Routes>
      </main>
    </div>
  );
}
