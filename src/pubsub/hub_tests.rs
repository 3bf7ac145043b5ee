use std::sync::{Arc, Mutex};

use super::*;

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<u64>>);

impl Outlet for Recorder {
    fn deliver(&self, publication: Publication) {
        self.0.lock().unwrap().push(publication.seq);
    }
}

fn hub(size: usize, ttl_s: u32) -> (Hub, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let outlet: Arc<dyn Outlet> = recorder.clone();
    (
        Hub::new(vec![outlet], HistoryLimits { size, ttl_s }),
        recorder,
    )
}

#[test]
fn only_attached_workers_get_publications() {
    let (hub, recorder) = hub(10, 300);
    hub.publish("c", "1");
    let joined = hub.attach("c", 0, Position::default());
    assert_eq!(joined.last_seq, 1);
    hub.publish("c", "2");
    assert_eq!(*recorder.0.lock().unwrap(), vec![2]);
}

#[test]
fn a_resume_gets_the_gap_from_history() {
    let (hub, _) = hub(10, 300);
    for n in 0..5 {
        hub.publish("c", &n.to_string());
    }
    let epoch = hub.find("c").unwrap().epoch.clone();
    let position = Position {
        since: Some(2),
        epoch: Some(&epoch),
    };
    let joined = hub.attach("c", 0, position);
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
    let first = hub.attach("c", 0, Position::default()).channel;
    hub.publish("c", "1");
    assert_eq!(hub.channel_count(), 1);
    hub.detach(&first, 0);
    assert_eq!(hub.channel_count(), 0, "no subscriber, no history: gone");
    let (again, seq) = hub.publish("c", "1");
    assert_eq!(seq, 1, "the sequence restarts");
    assert_ne!(again.epoch, first.epoch);
}

#[test]
fn history_keeps_a_channel_until_it_expires() {
    let (hub, _) = hub(10, 0);
    hub.publish("c", "1");
    assert_eq!(hub.channel_count(), 1, "history keeps it");
    assert!(hub.backlog("c", 0, 10).is_some());
    hub.sweep(); // a TTL of 0 expires everything at once
    assert_eq!(hub.channel_count(), 0);
    assert!(hub.backlog("c", 0, 10).is_none());
}
