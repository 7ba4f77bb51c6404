//! The event queues between the partitions (`EVENT_POST`/`EVENT_COMPLETE`, and duet's own events to
//! the ROS): one bounded FIFO per receiving partition.

use std::collections::VecDeque;
use std::sync::Mutex;

use abi::EVENT_QUEUE_DEPTH;
use hvm::Partition;

/// An event number and its payload.
type Event = (u64, u64);

/// Events waiting for the ROS (index 0) and for the HRT (index 1).
#[derive(Debug, Default)]
pub(crate) struct EventQueues {
    queues: Mutex<[VecDeque<Event>; 2]>,
}

fn index(to: Partition) -> usize {
    match to {
        Partition::Ros => 0,
        Partition::Hrt => 1,
    }
}

impl EventQueues {
    /// Queues an event of duet's own for the ROS; when the queue is full the oldest event makes room
    /// (the newest state matters most).
    pub fn post_vmm(&self, event: u64, payload: u64) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut q[index(Partition::Ros)];
        if q.len() >= EVENT_QUEUE_DEPTH {
            if let Some((old, _)) = q.pop_front() {
                log::debug!("partitioned VM: the ROS's event queue is full; event {old:#x} dropped for {event:#x}");
            }
        }
        q.push_back((event, payload));
    }

    /// Queues a guest's event for partition `to`; false if that queue is full.
    pub fn post(&self, to: Partition, event: u64, payload: u64) -> bool {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut q[index(to)];
        if q.len() >= EVENT_QUEUE_DEPTH {
            return false;
        }
        q.push_back((event, payload));
        true
    }

    /// The oldest event waiting for partition `to`.
    pub fn take(&self, to: Partition) -> Option<Event> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())[index(to)].pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_events_are_bounded_and_duets_own_push_out_the_oldest() {
        let q = EventQueues::default();
        for i in 0..EVENT_QUEUE_DEPTH as u64 {
            assert!(q.post(Partition::Hrt, i, 0));
        }
        assert!(!q.post(Partition::Hrt, 99, 0), "a full queue refuses a guest's event");
        assert_eq!(q.take(Partition::Hrt), Some((0, 0)));
        assert_eq!(q.take(Partition::Ros), None);
        for i in 0..=EVENT_QUEUE_DEPTH as u64 {
            q.post_vmm(i, i);
        }
        assert_eq!(q.take(Partition::Ros), Some((1, 1)), "the oldest of duet's events made room");
    }
}
