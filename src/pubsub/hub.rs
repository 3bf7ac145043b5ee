//! The hub: channel names, their sequence numbers, epochs and history, and the
//! hand-off of each publish to the workers that hold subscribers of its channel.
//!
//! Lock order: the name map, then a channel's state. A channel is removed (under
//! both locks) once no worker has held it and its history has been empty for
//! `keep_idle_s`; a worker or a publisher that finds it removed looks the name up
//! again. The wait keeps a long-poller's channel, and its epoch, between two polls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use ecow::EcoString;

use super::epoch::{Epoch, Epochs};
use super::history::CatchUp;
use super::presence::Presence;
use super::publication::{Outlet, Publication, Upstream};
use crate::proto::command;

use super::channel::Locked;
pub use super::channel::{Channel, ChannelId, ChannelRef};
use super::names::Names;
use super::sequence::Sequence;

/// How much history each channel keeps, and how long a channel left with nothing
/// keeps its epoch before it is removed.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub size: usize,
    pub ttl_s: u32,
    pub keep_idle_s: u32,
}

/// A worker joined a channel: where it is live from, and what a resume needs first.
#[derive(Debug)]
pub struct Joined {
    pub channel: ChannelRef,
    /// Every publish after this seq reaches the worker through its inbox.
    pub last_seq: u64,
    pub catch_up: CatchUp,
}

/// What a resume asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position<'a> {
    pub since: Option<u64>,
    pub epoch: Option<&'a str>,
}

/// `--max-channels` channels exist: a new one was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyChannels;

/// The reason a client is given (an error reply, close 1013, or 503).
pub const TOO_MANY_CHANNELS: &str = "too many channels";

/// Why a worker could not attach to a channel now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    TooManyChannels,
    /// The broker is reading where the channel stands; the worker is told when it
    /// may attach (`Outlet::ready`).
    Syncing,
}

/// The history API's answer.
#[derive(Debug)]
pub struct Backlog {
    pub epoch: Box<str>,
    pub last_seq: u64,
    pub messages: Vec<(u64, Bytes)>,
    pub recovered: bool,
}

#[derive(Debug)]
pub struct Hub {
    channels: RwLock<Names>,
    /// Channels with history or with nothing at all: the only ones the sweep visits.
    watched: Mutex<Vec<ChannelRef>>,
    outlets: Vec<Arc<dyn Outlet>>,
    limits: HistoryLimits,
    epochs: Epochs,
    published_total: AtomicU64,
    /// `--max-channels`: past it, a channel is not created.
    max_channels: usize,
    channels_refused: AtomicU64,
    started: Instant,
    /// `--presence-channels` and `--presence-events`.
    presence_prefixes: &'static [Box<str>],
    presence_events: bool,
    /// `--broker`: where channels are numbered and relayed between nodes.
    upstream: std::sync::OnceLock<Arc<dyn Upstream>>,
    /// Channels the broker is syncing, with the workers waiting on each (bit i).
    syncing: Mutex<HashMap<Box<str>, u64>>,
    /// Who is connected to each channel that keeps presence and has someone (or a
    /// leave in its grace): kept here, not in every channel, which then fits 64 B.
    /// Locked after a channel's state, never before.
    presences: Mutex<HashMap<ChannelId, Present>>,
}

/// A presence channel's name beside who is there, so that the broker's refresh
/// lists them without visiting every channel.
#[derive(Debug)]
struct Present {
    name: EcoString,
    presence: Presence,
}

impl Hub {
    pub fn new(outlets: Vec<Arc<dyn Outlet>>, limits: HistoryLimits) -> Hub {
        Hub {
            channels: RwLock::default(),
            watched: Mutex::default(),
            outlets,
            limits,
            epochs: Epochs::new(),
            published_total: AtomicU64::new(0),
            max_channels: usize::MAX,
            channels_refused: AtomicU64::new(0),
            started: Instant::now(),
            presence_prefixes: &[],
            presence_events: false,
            upstream: std::sync::OnceLock::new(),
            syncing: Mutex::default(),
            presences: Mutex::default(),
        }
    }

    /// Refuses to create a channel while `max` exist.
    pub fn with_max_channels(mut self, max: usize) -> Hub {
        self.max_channels = max;
        self
    }

    /// Channels whose name starts with one of `prefixes` keep presence; with
    /// `events`, their joins and leaves are pushed to their subscribers.
    pub fn with_presence(mut self, prefixes: &'static [Box<str>], events: bool) -> Hub {
        self.presence_prefixes = prefixes;
        self.presence_events = events;
        self
    }

    fn now_s(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// The channel of that (already validated) name, if it exists now.
    pub fn find(&self, name: &str) -> Option<ChannelRef> {
        let channels = self.channels.read().expect("hub lock");
        channels.get(name)
    }

    /// The channel of that (already validated) name, created on first use unless
    /// `--max-channels` exist.
    fn channel(&self, name: &str) -> Result<ChannelRef, TooManyChannels> {
        self.channel_with_epoch(name, None)
    }

    /// The same, made with `epoch` (the broker's) rather than a new one.
    fn channel_with_epoch(
        &self,
        name: &str,
        epoch: Option<&str>,
    ) -> Result<ChannelRef, TooManyChannels> {
        if let Some(found) = self.find(name) {
            return Ok(found);
        }
        let mut channels = self.channels.write().expect("hub lock");
        if let Some(found) = channels.get(name) {
            return Ok(found);
        }
        if channels.len() >= self.max_channels {
            self.channels_refused.fetch_add(1, Ordering::Relaxed);
            return Err(TooManyChannels);
        }
        // One that Halley did not make (longer than 8 bytes) starts a new epoch:
        // resumes then get recovered:false rather than a wrong answer.
        let epoch = epoch
            .and_then(Epoch::parse)
            .unwrap_or_else(|| self.epochs.next_epoch());
        let keeps_presence = self
            .presence_prefixes
            .iter()
            .any(|p| name.starts_with(&**p));
        let Some(channel) = ChannelRef::create(name, epoch, keeps_presence) else {
            self.channels_refused.fetch_add(1, Ordering::Relaxed);
            return Err(TooManyChannels);
        };
        channels.insert(ChannelRef::clone(&channel));
        Ok(channel)
    }

    /// Some worker has more publications waiting than it should: a publisher
    /// should wait before it adds more for that worker (see `worker::inbox`).
    pub fn workers_behind(&self) -> bool {
        self.outlets.iter().any(|outlet| outlet.behind())
    }

    /// A publish to `name` would go to a worker that is behind. Only asked once
    /// `workers_behind` says some is, so the common case costs no lookup; a worker
    /// busy with one channel does not hold publishers of channels it does not hold.
    pub fn behind_for(&self, name: &str) -> bool {
        let Some(channel) = self.find(name) else {
            return false;
        };
        let holders = channel.state().holders();
        self.outlets
            .iter()
            .enumerate()
            .any(|(worker, outlet)| holders.has(worker) && outlet.behind())
    }

    /// Numbers the message, keeps it in history and hands it to every worker with
    /// subscribers. The channel lock is held across the hand-off so that every
    /// inbox receives a channel's messages in sequence order.
    pub fn publish(&self, name: &str, data: &str) -> Result<(ChannelRef, u64), TooManyChannels> {
        loop {
            let channel = self.channel(name)?;
            let mut state = channel.state();
            if state.marks().removed {
                continue;
            }
            self.published_total.fetch_add(1, Ordering::Relaxed);
            let seq = self.push_locked(&channel, &mut state, |seq| command::push(name, seq, data));
            drop(state);
            return Ok((channel, seq));
        }
    }

    /// Numbers one message (built by `payload` from its seq), keeps it and hands it
    /// to the workers, under the channel lock the caller holds.
    fn push_locked(
        &self,
        channel: &ChannelRef,
        state: &mut Locked<'_>,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> u64 {
        let seq = state.last_seq() + 1;
        self.hand_off(channel, state, seq, payload(seq));
        seq
    }

    /// Keeps message `seq` (above `last_seq`) and hands it to the workers.
    fn hand_off(&self, channel: &ChannelRef, state: &mut Locked<'_>, seq: u64, payload: Vec<u8>) {
        state.set_last_seq(seq);
        let payload = Bytes::from(payload);
        if self.limits.size > 0 {
            state.keep(seq, self.now_s(), payload.clone(), self.limits.size);
        }
        for (worker, outlet) in self.outlets.iter().enumerate() {
            if state.holders().has(worker) {
                outlet.deliver(Publication {
                    channel: ChannelRef::clone(channel),
                    seq,
                    payload: payload.clone(),
                });
            }
        }
        self.watch(channel, state);
    }

    /// Worker `worker` takes its first subscriber (or held poll) of `name`. From
    /// the returned `last_seq` on, every publish reaches the worker; the catch-up
    /// holds what a resume from `position` needs before that.
    pub fn attach(
        &self,
        name: &str,
        worker: usize,
        position: Position<'_>,
    ) -> Result<Joined, AttachError> {
        // Standalone, no extra lookup: only a broker makes a channel wait.
        if self.upstream.get().is_some()
            && self.find(name).is_none()
            && self.wait_for_sync(name, worker)
        {
            return Err(AttachError::Syncing);
        }
        loop {
            let channel = self
                .channel(name)
                .map_err(|_| AttachError::TooManyChannels)?;
            let mut state = channel.state();
            if state.marks().removed {
                continue;
            }
            state.holders_mut().add(1 << worker);
            let last_seq = state.last_seq();
            let catch_up = catch_up(&channel, &state, position, last_seq);
            drop(state);
            return Ok(Joined {
                channel,
                last_seq,
                catch_up,
            });
        }
    }

    /// A resume on a channel the worker already holds, live from `upto`.
    pub fn catch_up(&self, channel: &Channel, position: Position<'_>, upto: u64) -> CatchUp {
        catch_up(channel, &channel.state(), position, upto)
    }

    /// A worker lost its last subscriber of `channel`.
    pub fn detach(&self, channel: &ChannelRef, worker: usize) {
        let mut state = channel.state();
        state.holders_mut().remove(worker);
        self.watch(channel, &mut state);
    }

    /// Lists the channel for the sweep if it has history to expire or nothing at
    /// all (then it is removed once idle long enough).
    fn watch(&self, channel: &ChannelRef, state: &mut Locked<'_>) {
        let nothing_to_do = state.history().is_empty() && !self.presence_leaving(channel);
        if state.marks().watched || (state.holders().any() && nothing_to_do) {
            return;
        }
        state.set_watched(true);
        self.watched
            .lock()
            .expect("watch lock")
            .push(ChannelRef::clone(channel));
    }

    /// Up to `limit` kept messages of `name` after `since`, without creating it.
    pub fn backlog(&self, name: &str, since: u64, limit: usize) -> Option<Backlog> {
        let channel = self.find(name)?;
        let state = channel.state();
        let messages = state.history().after(since, limit);
        let recovered = since <= state.last_seq()
            && state
                .catch_up(Some(since), true, state.last_seq())
                .recovered;
        Some(Backlog {
            epoch: channel.epoch.as_str().into(),
            last_seq: state.last_seq(),
            messages,
            recovered,
        })
    }

    /// Once a second: expires history and removes the channels that have been
    /// left with nothing for `keep_idle_s`. Visits only the watched channels.
    pub fn sweep(&self) {
        let now = self.now_s();
        let listed = std::mem::take(&mut *self.watched.lock().expect("watch lock"));
        let mut kept = Vec::with_capacity(listed.len());
        let mut dead = Vec::new();
        for channel in listed {
            let mut state = channel.state();
            state.expire(now, self.limits.ttl_s);
            self.expire_presence(&channel, &mut state, now);
            let quiet = state.history().is_empty() && !self.presence_leaving(&channel);
            let idle = !state.holders().any() && quiet;
            if !idle {
                state.holders_mut().settled();
                if quiet {
                    state.set_watched(false); // held, nothing to expire
                    continue;
                }
            } else if now.saturating_sub(state.holders_mut().idle_since(now))
                >= self.limits.keep_idle_s
            {
                drop(state);
                dead.push(channel);
                continue;
            }
            drop(state);
            kept.push(channel);
        }
        self.watched.lock().expect("watch lock").extend(kept);
        for channel in dead {
            self.remove_if_dead(&channel);
        }
        let mut channels = self.channels.write().expect("hub lock");
        if channels.capacity() > 4 * channels.len() + 64 {
            channels.shrink_to_fit();
        }
    }

    fn remove_if_dead(&self, channel: &ChannelRef) {
        let mut channels = self.channels.write().expect("hub lock");
        let mut state = channel.state();
        if state.marks().removed || state.holders().any() || !state.history().is_empty() {
            // Revived between the sweep's look and now: watch it again if need be.
            state.set_watched(false);
            drop(channels);
            self.watch(channel, &mut state);
            return;
        }
        state.set_removed();
        // Normally gone already (a channel with someone leaving is not removed).
        self.presences().remove(&channel.id);
        if channels
            .get(&channel.name)
            .is_some_and(|c| ChannelRef::ptr_eq(&c, channel))
        {
            drop(channels.remove(&channel.name));
            if let Some(upstream) = self.upstream.get() {
                upstream.release(&channel.name);
            }
        }
    }

    /// Channels that exist now.
    pub fn channel_count(&self) -> usize {
        self.channels.read().expect("hub lock").len()
    }

    /// Channels not created because `--max-channels` existed.
    pub fn channels_refused(&self) -> u64 {
        self.channels_refused.load(Ordering::Relaxed)
    }

    pub fn published_total(&self) -> u64 {
        self.published_total.load(Ordering::Relaxed)
    }
}

fn catch_up(channel: &Channel, state: &Sequence, position: Position<'_>, upto: u64) -> CatchUp {
    let same_epoch = position.epoch.is_none_or(|e| e == &*channel.epoch);
    state.catch_up(position.since, same_epoch, upto)
}

#[path = "hub_presence.rs"]
mod presence_side;

#[path = "hub_remote.rs"]
pub mod remote;

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
