"""Access token for a shared app: when $SIME_APP_TOKEN is set, each browser session signs in once.

`sime-app --token T` (or $SIME_APP_TOKEN) sets the token; until a session has entered it, the app shows
only a sign-in box and reads nothing from the store. Tokens are compared in constant time, and a wrong
token costs the guesser a second.
"""

from __future__ import annotations

import hmac
import os
import time

import streamlit as st

ENV_TOKEN = "SIME_APP_TOKEN"
_SIGNED_IN = "auth_signed_in"
_FIELD = "auth_token"
#: Seconds a wrong token waits before the answer (slows down guessing).
WRONG_TOKEN_DELAY_S = 1.0


def required_token() -> str | None:
    """The access token this server demands, or None when it is open to whoever reaches it."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    return token or None


def token_matches(given: str, expected: str) -> bool:
    """True when `given` is the access token (constant-time comparison)."""
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


def signed_in() -> bool:
    """True when this session may use the app; otherwise draw the sign-in box and return False."""
    expected = required_token()
    if expected is None or st.session_state.get(_SIGNED_IN) is True:
        return True
    st.title("SIME curation")
    st.caption("This app is protected by an access token: ask whoever started it (`sime-app --token`).")
    with st.form("auth_form", border=True):
        given = st.text_input("Access token", type="password", key=_FIELD)
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if token_matches(given or "", expected):
            st.session_state[_SIGNED_IN] = True
            st.rerun()
        time.sleep(WRONG_TOKEN_DELAY_S)
        st.error("Wrong access token.")
    return False
