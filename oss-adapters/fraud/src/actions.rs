//! `ActionQueue`, the `Actions` the server can hand the detectors: it never blocks and
//! never grows past its capacity. Each finding becomes an `Order` (raise this alarm;
//! suspend this subscriber under this idempotency key) in a bounded queue that the
//! server's worker drains (`drain`) to call `tollgate-alarms` and `tollgate-orders`; when
//! the worker falls behind, new orders are dropped and counted (`dropped`), the
//! detectors keep their pace, and the alarms already queued say what is going on.

use std::collections::VecDeque;

use crate::finding::{Actions, AlarmFields, Finding};

/// What the server's worker is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Raise (or update) this alarm (`tollgate_alarms::Alarms::raise`).
    Alarm(AlarmFields),
    /// Suspend the subscriber: a TMF622 product order, idempotent by `key`, so a replayed
    /// stream (the same finding again) suspends once.
    Suspend { subscriber: u64, key: String },
}

/// A bounded queue of orders (see the module text).
#[derive(Debug)]
pub struct ActionQueue {
    orders: VecDeque<Order>,
    capacity: usize,
    dropped: u64,
}

impl ActionQueue {
    /// A queue of at most `capacity` orders (at least 1).
    pub fn new(capacity: usize) -> ActionQueue {
        ActionQueue { orders: VecDeque::new(), capacity: capacity.max(1), dropped: 0 }
    }

    /// The idempotency key of a suspension: detector, subscriber and the finding's
    /// instant, which a replay of the same events reproduces.
    pub fn suspend_key(subscriber: u64, finding: &Finding) -> String {
        format!("fraud:{}:{subscriber}:{}", finding.detector.name(), finding.at_ms)
    }

    fn push(&mut self, order: Order) {
        if self.orders.len() < self.capacity {
            self.orders.push_back(order);
        } else {
            self.dropped += 1;
        }
    }

    /// Takes the queued orders, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Order> + '_ {
        self.orders.drain(..)
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Orders dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Actions for ActionQueue {
    fn alarm(&mut self, finding: &Finding) {
        self.push(Order::Alarm(finding.alarm_fields()));
    }

    fn suspend(&mut self, subscriber: u64, finding: &Finding) {
        self.push(Order::Suspend { subscriber, key: ActionQueue::suspend_key(subscriber, finding) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::tests::call;
    use crate::{Detectors, Policy};

    /// Subscriber `subscriber`'s IRSF burst of two calls (the policy's minimum here)
    /// starting at `minute`.
    fn burst(detectors: &mut Detectors, queue: &mut ActionQueue, subscriber: u64, minute: i64) {
        for m in [minute, minute + 1] {
            detectors.observe_and_act(&call(subscriber, m * 60_000, "88212", 30), queue);
        }
    }

    fn detectors() -> Detectors {
        let mut policy = Policy::default();
        policy.irsf.min_calls = 2;
        Detectors::new(&policy).expect("valid policy")
    }

    #[test]
    fn a_suspending_finding_queues_its_alarm_then_its_suspension() {
        let (mut d, mut queue) = (detectors(), ActionQueue::new(10));
        burst(&mut d, &mut queue, 5, 0);
        let orders: Vec<Order> = queue.drain().collect();
        assert_eq!(orders.len(), 2);
        assert!(matches!(&orders[0], Order::Alarm(fields) if fields.alarmed_object == "subscriber/5/irsf"));
        assert_eq!(orders[1], Order::Suspend { subscriber: 5, key: "fraud:irsf:5:60000".to_owned() });
        assert!(queue.is_empty());
    }

    #[test]
    fn a_replayed_stream_asks_for_the_same_suspension_key() {
        let (mut first, mut second) = (detectors(), detectors());
        let (mut a, mut b) = (ActionQueue::new(10), ActionQueue::new(10));
        burst(&mut first, &mut a, 5, 0);
        burst(&mut second, &mut b, 5, 0);
        assert_eq!(a.drain().collect::<Vec<_>>(), b.drain().collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        let (mut d, mut queue) = (detectors(), ActionQueue::new(3));
        for subscriber in 0..4 {
            burst(&mut d, &mut queue, subscriber, 0);
        }
        // 4 findings × (alarm + suspension) = 8 orders; 3 kept, 5 dropped.
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.dropped(), 5);
        assert_eq!(queue.drain().count(), 3);
        burst(&mut d, &mut queue, 9, 0);
        assert_eq!(queue.len(), 2, "room again once drained");
    }
}
