"""Stage: the server's core, without Streamlit: background jobs (:mod:`~ogaudit.server.jobs`), users and sign-in
(:mod:`~ogaudit.server.auth`), and what a visitor may name (:mod:`~ogaudit.server.sandbox`)."""
