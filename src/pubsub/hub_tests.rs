use std::sync::{Arc, Mutex};

use super::*;

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<u64>>);

impl Outlet for Recorder {
    fn deliver(&self, publication: Publication) {
        self.0.lock().unwrap().push(publication.seq);
    }
    fn ready(&self, _: crate::pubsub::hub::ChannelRef) {}
    fn published(&self, _: usize, _: String) {}
}

fn hub(size: usize, ttl_s: u32) -> (Hub, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let outlet: Arc<dyn Outlet> = recorder.clone();
    (
        Hub::new(
            vec![outlet],
            HistoryLimits {
                size,
                ttl_s,
                keep_idle_s: 0,
            },
        ),
        recorder,
    )
}

#[test]
fn only_attached_workers_get_publications() {
    let (hub, recorder) = hub(10, 300);
    hub.publish("c", "1").unwrap();
    let joined = hub.attach("c", 0, Position::default()).unwrap();
    assert_eq!(joined.last_seq, 1);
    hub.publish("c", "2").unwrap();
    assert_eq!(*recorder.0.lock().unwrap(), vec![2]);
}

#[test]
fn a_resume_gets_the_gap_from_history() {
    let (hub, _) = hub(10, 300);
    for n in 0..5 {
        hub.publish("c", &n.to_string()).unwrap();
    }
    let epoch = hub.find("c").unwrap().epoch;
    let position = Position {
        since: Some(2),
        epoch: Some(&epoch),
    };
    let joined = hub.attach("c", 0, position).unwrap();
    assert!(joined.catch_up.recovered);
    let seqs: Vec<u64> = joined.catch_up.messages.iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    let foreign = Position {
        since: Some(2),
        epoch: Some("other"),
    };
    assert!(!hub.catch_up(&joined.channel, foreign, 5).recovered);
}

#[test]
fn an_unused_channel_is_removed_and_returns_with_a_new_epoch() {
    let (hub, _) = hub(0, 300);
    let first = hub.attach("c", 0, Position::default()).unwrap().channel;
    hub.publish("c", "1").unwrap();
    assert_eq!(hub.channel_count(), 1);
    hub.detach(&first, 0);
    assert_eq!(hub.channel_count(), 1, "kept until the sweep");
    hub.sweep();
    assert_eq!(hub.channel_count(), 0, "no subscriber, no history: gone");
    let (again, seq) = hub.publish("c", "1").unwrap();
    assert_eq!(seq, 1, "the sequence restarts");
    assert_ne!(again.epoch, first.epoch);
}

#[test]
fn an_idle_channel_keeps_its_epoch_while_it_lingers() {
    let recorder = Arc::new(Recorder::default());
    let outlet: Arc<dyn Outlet> = recorder;
    let limits = HistoryLimits {
        size: 0,
        ttl_s: 300,
        keep_idle_s: 60,
    };
    let hub = Hub::new(vec![outlet], limits);
    let first = hub.attach("poll", 0, Position::default()).unwrap().channel;
    hub.detach(&first, 0);
    hub.sweep();
    let again = hub.attach("poll", 0, Position::default()).unwrap().channel;
    assert!(
        ChannelRef::ptr_eq(&first, &again),
        "the same channel, the same epoch"
    );
}

#[test]
fn no_channel_is_created_past_the_cap() {
    let (hub, _) = hub(10, 300);
    let hub = hub.with_max_channels(2);
    hub.publish("a", "1").unwrap();
    hub.attach("b", 0, Position::default()).unwrap();
    assert_eq!(hub.publish("c", "1").unwrap_err(), TooManyChannels);
    assert!(hub.attach("c", 0, Position::default()).is_err());
    assert_eq!(hub.channel_count(), 2);
    assert_eq!(hub.channels_refused(), 2);
    // Existing channels still take publishes and subscribers.
    assert_eq!(hub.publish("b", "2").unwrap().1, 1);
    assert!(hub.attach("a", 1, Position::default()).is_ok());
}

#[test]
fn history_keeps_a_channel_until_it_expires() {
    let (hub, _) = hub(10, 0);
    hub.publish("c", "1").unwrap();
    assert_eq!(hub.channel_count(), 1, "history keeps it");
    assert!(hub.backlog("c", 0, 10).is_some());
    hub.sweep(); // a TTL of 0 expires everything at once
    assert_eq!(hub.channel_count(), 0);
    assert!(hub.backlog("c", 0, 10).is_none());
}

mod remote {
    use super::*;
    use crate::pubsub::hub::remote::{Relay, Standing};
    use crate::pubsub::hub::AttachError;
    use crate::pubsub::publication::Upstream;

    #[derive(Debug, Default)]
    struct FakeBroker(Mutex<Vec<String>>);

    impl Upstream for FakeBroker {
        fn is_up(&self) -> bool {
            true
        }
        fn hold(&self, channel: &str) {
            self.0.lock().unwrap().push(format!("hold {channel}"));
        }
        fn release(&self, channel: &str) {
            self.0.lock().unwrap().push(format!("release {channel}"));
        }
        fn publish_event(&self, channel: &str, _: String) {
            self.0.lock().unwrap().push(format!("event {channel}"));
        }
        fn presence_changed(&self, _: &str) {}
    }

    fn standing(epoch: &str, last_seq: u64, log: &[u64]) -> Standing {
        Standing {
            epoch: epoch.into(),
            last_seq,
            log: log.iter().map(|&s| (s, 0, s.to_string())).collect(),
        }
    }

    #[test]
    fn a_channel_is_synced_before_workers_attach_and_takes_redis_numbers() {
        let (hub, recorder) = hub(10, 60);
        let broker = Arc::new(FakeBroker::default());
        hub.set_upstream(broker.clone());
        let first = hub.attach("c", 0, Position::default());
        assert_eq!(first.unwrap_err(), AttachError::Syncing);
        assert_eq!(
            hub.attach("c", 0, Position::default()).unwrap_err(),
            AttachError::Syncing
        );
        assert_eq!(*broker.0.lock().unwrap(), vec!["hold c"], "asked once");
        hub.synced("c", standing("e1", 7, &[6, 7]));
        let joined = hub
            .attach(
                "c",
                0,
                Position {
                    since: Some(5),
                    epoch: Some("e1"),
                },
            )
            .unwrap();
        assert_eq!(&*joined.channel.epoch, "e1", "the epoch comes from Redis");
        assert_eq!(joined.last_seq, 7);
        assert!(joined.catch_up.recovered);
        assert_eq!(joined.catch_up.messages.len(), 2);
        assert_eq!(hub.relayed("c", 8, "8"), Relay::Delivered);
        assert_eq!(hub.relayed("c", 8, "8"), Relay::Duplicate);
        assert_eq!(hub.relayed("c", 10, "10"), Relay::AfterGap);
        assert_eq!(hub.relayed("other", 1, "1"), Relay::NotHeld);
        assert_eq!(*recorder.0.lock().unwrap(), vec![8, 10]);
    }

    #[test]
    fn a_resync_delivers_what_was_missed_once() {
        let (hub, recorder) = hub(10, 60);
        hub.set_upstream(Arc::new(FakeBroker::default()));
        let _ = hub.attach("c", 0, Position::default());
        hub.synced("c", standing("e1", 2, &[1, 2]));
        hub.attach("c", 0, Position::default()).unwrap();
        hub.relayed("c", 3, "3");
        // Back after an outage: 4 and 5 are in the log, 3 was seen already.
        hub.synced("c", standing("e1", 5, &[3, 4, 5]));
        assert_eq!(*recorder.0.lock().unwrap(), vec![3, 4, 5]);
        assert_eq!(hub.held()[0].2, 5);
    }

    #[test]
    fn abandoned_syncs_let_workers_make_the_channel_here() {
        let (hub, _) = hub(10, 60);
        hub.set_upstream(Arc::new(FakeBroker::default()));
        assert!(hub.attach("c", 0, Position::default()).is_err());
        assert_eq!(hub.syncing_count(), 1);
        hub.abandon_syncs();
        assert_eq!(hub.syncing_count(), 0);
    }
}

#[test]
fn the_hub_keeps_presence_only_while_someone_is_there_or_leaving() {
    static PREFIXES: std::sync::OnceLock<Vec<Box<str>>> = std::sync::OnceLock::new();
    let prefixes = PREFIXES.get_or_init(|| vec![Box::from("room:")]);
    let (hub, _) = hub(0, 300);
    let hub = hub.with_presence(prefixes, false);
    let room = hub
        .attach("room:1", 0, Position::default())
        .unwrap()
        .channel;
    let plain = hub.attach("news", 0, Position::default()).unwrap().channel;
    assert!(room.keeps_presence() && !plain.keeps_presence());

    // An anonymous connection is counted, and leaves no entry behind.
    hub.presence_join(&room, None, None);
    assert_eq!(hub.presences().len(), 1);
    assert!(hub
        .presence_json("room:1")
        .unwrap()
        .contains("\"connections\":1"));
    hub.presence_leave(&room, None);
    assert!(hub.presences().is_empty(), "nobody left: no entry");

    // A user who leaves stays listed (as leaving) until the sweep decides.
    hub.presence_join(&room, Some("ann"), None);
    hub.presence_leave(&room, Some("ann"));
    assert!(hub.presence_leaving(&room));
    assert!(!hub.presence_leaving(&plain));
    hub.presence_join(&room, Some("ann"), None);
    assert!(!hub.presence_leaving(&room), "back within the grace");
    // What the broker writes for the other nodes: only the channels with someone.
    let listed = hub.local_presence();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(&*listed[0].0, "room:1");
    assert!(listed[0].1.contains("ann"), "{listed:?}");
    assert!(hub.presence_json("news").is_err(), "keeps no presence");
}

/// An outlet whose worker is behind when told so.
#[derive(Debug, Default)]
struct Laggard(std::sync::atomic::AtomicBool);

impl Outlet for Laggard {
    fn deliver(&self, _: Publication) {}
    fn ready(&self, _: crate::pubsub::hub::ChannelRef) {}
    fn published(&self, _: usize, _: String) {}
    fn behind(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn a_publish_waits_only_for_a_worker_behind_that_holds_its_channel() {
    let workers: Vec<Arc<Laggard>> = (0..2).map(|_| Arc::default()).collect();
    let outlets = workers
        .iter()
        .map(|w| Arc::clone(w) as Arc<dyn Outlet>)
        .collect();
    let limits = HistoryLimits {
        size: 0,
        ttl_s: 0,
        keep_idle_s: 0,
    };
    let hub = Hub::new(outlets, limits);
    hub.attach("on-0", 0, Position::default()).unwrap();
    hub.attach("on-1", 1, Position::default()).unwrap();
    assert!(!hub.workers_behind() && !hub.behind_for("on-0"));
    workers[1].0.store(true, Ordering::Relaxed);
    assert!(hub.workers_behind());
    assert!(hub.behind_for("on-1"));
    assert!(!hub.behind_for("on-0"), "worker 0 is not behind");
    assert!(!hub.behind_for("nobody-holds-it"));
}
