//! Tokens in the worker: a request's `?token=`, the `auth` and `refresh`
//! commands, the join rule for `private:` and `user:` channels, expiry in the
//! once-a-second sweep, and the presence hooks on join and leave. The rules
//! themselves are in `crate::auth`, free of clocks; the wall clock is read here.

use std::time::{SystemTime, UNIX_EPOCH};

use super::connection::{Connection, Phase, Transport};
use super::Worker;
use crate::auth::rules::Denied;
use crate::auth::{self, Session};
use crate::proto::{command, sse};
use crate::pubsub::hub::ChannelRef;

/// A close reason fits a control frame: 125 bytes less the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// Seconds since 1970, from the wall clock (tokens carry wall-clock times).
pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A join the token does not allow, with its answer on each transport.
#[derive(Debug)]
pub(super) struct NotAllowed {
    denied: Denied,
    pub reason: String,
}

impl NotAllowed {
    /// 3000 Unauthorized (get a token) or 3003 Forbidden (this token cannot).
    pub fn close_code(&self) -> u16 {
        match self.denied {
            Denied::TokenRequired => 3000,
            Denied::Forbidden => 3003,
        }
    }

    pub fn status(&self) -> u16 {
        match self.denied {
            Denied::TokenRequired => 401,
            Denied::Forbidden => 403,
        }
    }

    pub fn close_reason(&self) -> &str {
        // Channel names are ASCII, so any byte is a character boundary.
        &self.reason[..self.reason.len().min(MAX_CLOSE_REASON)]
    }
}

/// What the sweep found due for a connection's token.
#[derive(Debug, Clone, Copy)]
pub(super) enum TokenDue {
    Expired,
    AuthTimeout,
}

impl Worker {
    pub(super) fn session(&self, key: usize) -> Option<&Session> {
        self.side(key)?.session.as_ref()
    }

    fn verify(&mut self, token: &str) -> Result<Session, &'static str> {
        let Some(verifier) = self.settings.tokens else {
            self.counters.auth_failures += 1;
            return Err("tokens are not enabled on this server");
        };
        match verifier.verify(token, now_unix()) {
            Ok(verified) => {
                let keep_info = !self.settings.presence_channels.is_empty();
                Ok(Session::new(verified, keep_info))
            }
            Err(reason) => {
                self.counters.auth_failures += 1;
                Err(reason)
            }
        }
    }

    /// A request's token (upgrade, SSE, poll) becomes the connection's session;
    /// a request without one leaves it without (a kept-alive poll connection may
    /// carry a different token on each request).
    pub(super) fn adopt_token(
        &mut self,
        key: usize,
        token: Option<&str>,
    ) -> Result<(), &'static str> {
        let session = match token {
            Some(token) => Some(self.verify(token)?),
            None if self.conns[key].side == 0 => return Ok(()),
            None => None,
        };
        self.side_mut(key).session = session;
        self.trim_side(key);
        Ok(())
    }

    /// A WebSocket upgrade: its token, or, under `--require-token`, a deadline for
    /// `{"op":"auth"}`.
    pub(super) fn open_session(
        &mut self,
        key: usize,
        token: Option<&str>,
    ) -> Result<(), &'static str> {
        self.adopt_token(key, token)?;
        if token.is_none() && self.settings.require_token {
            let deadline = self.now + self.settings.handshake_timeout_s;
            self.side_mut(key).auth_deadline = deadline;
        }
        Ok(())
    }

    /// May `key` join (or publish to) `channel` with the session it has?
    pub(super) fn may_join(&mut self, key: usize, channel: &str) -> Result<(), NotAllowed> {
        let require = self.settings.require_token;
        match auth::may_join(channel, self.session(key), require) {
            Ok(()) => Ok(()),
            Err(denied) => {
                self.counters.forbidden += 1;
                let reason = match denied {
                    Denied::TokenRequired => "token required".to_owned(),
                    Denied::Forbidden => format!("forbidden channel {channel}"),
                };
                Err(NotAllowed { denied, reason })
            }
        }
    }

    /// Under `--require-token`, a connection that has not authenticated may only
    /// send `auth` (and `noop`).
    pub(super) fn lacks_required_token(&self, key: usize) -> bool {
        self.settings.require_token && self.session(key).is_none()
    }

    /// `{"op":"auth"}`: a WebSocket that opened without a token gets a session.
    pub(super) fn on_auth(&mut self, key: usize, token: &str) {
        let session = match self.verify(token) {
            Ok(session) => session,
            Err(reason) => return self.refuse(key, reason),
        };
        let previous = self.session(key).map(|s| Box::<str>::from(s.user()));
        if previous
            .as_deref()
            .is_some_and(|user| user != session.user())
        {
            self.counters.auth_failures += 1;
            return self.refuse(key, "already authenticated as another user");
        }
        let reply = command::authenticated(session.user(), session.exp());
        let side = self.side_mut(key);
        side.session = Some(session);
        side.auth_deadline = 0;
        if previous.is_none() {
            // Presence counted this connection as anonymous until now.
            self.reannounce(key);
        }
        self.reply(key, reply);
    }

    /// `{"op":"refresh"}`: a fresh token of the same user replaces the session;
    /// on any refusal the old session stays.
    pub(super) fn on_refresh(&mut self, key: usize, token: &str) {
        let Some(user) = self.session(key).map(|s| Box::<str>::from(s.user())) else {
            return self.refuse(key, "nothing to refresh: send auth first");
        };
        let session = match self.verify(token) {
            Ok(session) => session,
            Err(reason) => return self.refuse(key, reason),
        };
        if session.user() != &*user {
            self.counters.auth_failures += 1;
            return self.refuse(key, "a refresh must keep the same sub");
        }
        let reply = command::refreshed(session.exp());
        self.side_mut(key).session = Some(session);
        self.counters.refreshes += 1;
        self.reply(key, reply);
    }

    /// Presence channels the connection joined anonymously now count its user.
    fn reannounce(&mut self, key: usize) {
        let Some(session) = self.session(key) else {
            return;
        };
        for subscription in self.subscriptions(key) {
            let Some(local) = self.topics.get(subscription.channel) else {
                continue;
            };
            if local.channel.keeps_presence() {
                self.hub.presence_leave(&local.channel.to_ref(), None);
                self.hub.presence_join(
                    &local.channel.to_ref(),
                    Some(session.user()),
                    session.info(),
                );
            }
        }
    }

    /// The connection joined a channel that keeps presence.
    pub(super) fn presence_joined(&self, key: usize, channel: &ChannelRef) {
        let session = self.session(key);
        self.hub.presence_join(
            channel,
            session.map(Session::user),
            session.and_then(Session::info),
        );
    }

    /// The connection left a channel that keeps presence.
    pub(super) fn presence_left(&self, key: usize, channel: &ChannelRef) {
        let user = self.session(key).map(Session::user);
        self.hub.presence_leave(channel, user);
    }

    /// The sweep's check of one connection's token, at `now_unix`.
    pub(super) fn token_due(&self, conn: &Connection, now_unix: u64) -> Option<TokenDue> {
        if conn.side == 0 || !matches!(conn.phase, Phase::Open | Phase::Held) {
            return None;
        }
        let side = &self.sides[conn.side as usize - 1];
        match &side.session {
            Some(session) if session.expired(now_unix) => Some(TokenDue::Expired),
            Some(_) => None,
            None if side.auth_deadline != 0 && self.now >= side.auth_deadline => {
                Some(TokenDue::AuthTimeout)
            }
            None => None,
        }
    }

    /// Ends what an expired token (or a missing one) no longer allows.
    pub(super) fn on_token_due(&mut self, key: usize, due: TokenDue) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let (transport, phase) = (conn.transport, conn.phase);
        match due {
            TokenDue::AuthTimeout => {
                self.counters.auth_failures += 1;
                self.close_with(key, 3000, "authentication timeout");
            }
            TokenDue::Expired => {
                self.counters.token_expired_closes += 1;
                match (transport, phase) {
                    (Transport::WebSocket, _) => self.close_with(key, 3000, "token expired"),
                    (Transport::Sse, _) => {
                        self.unsubscribe_all(key);
                        let mut last = Vec::new();
                        sse::event(&mut last, Some("expired"), None, b"token expired");
                        let last = self.sse_bytes(key, &last);
                        self.end_with_http(key, last);
                    }
                    (Transport::Poll, Phase::Held) => {
                        self.counters.polls_held -= 1;
                        self.conns[key].phase = Phase::Request;
                        self.unsubscribe_all(key);
                        self.refuse_http(key, 401, "token expired");
                    }
                    _ => {}
                }
            }
        }
    }
}
