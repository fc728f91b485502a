//! Throttles of password guesses: each guess is recorded before it is checked, so no
//! burst gets more than the limit through, and only failures count.

use cairn_meta::ThrottleKey;

const MINUTE: i64 = 60_000;

fn keys(limit: u32) -> [ThrottleKey<'static>; 2] {
    [
        ThrottleKey {
            key: "user:bob",
            limit,
        },
        ThrottleKey {
            key: "addr:192.0.2.1",
            limit: 100,
        },
    ]
}

backend_tests! {
    async fn wrong_guesses_count_right_ones_do_not(store) {
        let now = 1_000 * MINUTE;
        for _ in 0..3 {
            // A right password: withdrawn, so it never counts.
            let guess = store.throttle_attempt(&keys(3), now, now + MINUTE).await.unwrap();
            store.throttle_withdraw(guess.unwrap()).await.unwrap();
        }
        for i in 0..3 {
            let guess = store.throttle_attempt(&keys(3), now, now + MINUTE).await.unwrap();
            assert!(guess.is_some(), "guess {i} is let through");
        }
        // The limit is reached: refused, and the refusal records nothing.
        for _ in 0..5 {
            assert!(store.throttle_attempt(&keys(3), now, now + MINUTE).await.unwrap().is_none());
        }
        // Another account from the same address is not throttled (the address allows 100).
        let other = [ThrottleKey { key: "user:carol", limit: 3 }];
        assert!(store.throttle_attempt(&other, now, now + MINUTE).await.unwrap().is_some());
        // Once the failures leave the window, guesses are let through again, and the
        // maintenance pass deletes them: 3 of bob's and bob's address, 1 of carol's.
        let later = now + MINUTE;
        assert!(store.throttle_attempt(&keys(3), later, later + MINUTE).await.unwrap().is_some());
        assert_eq!(store.prune_throttle(later).await.unwrap(), 0, "each guess pruned the expired");
        assert_eq!(store.prune_throttle(later + MINUTE).await.unwrap(), 2);
    }

    async fn a_burst_of_parallel_guesses_gets_no_more_than_the_limit_through(store) {
        let now = 1_000 * MINUTE;
        let limit = 5;
        let burst: Vec<_> = (0..24)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.throttle_attempt(&keys(limit), now, now + MINUTE).await.unwrap()
                })
            })
            .collect();
        let mut through = 0;
        for task in burst {
            through += u32::from(task.await.unwrap().is_some());
        }
        assert!(through <= limit, "{through} of the burst got through");
        // Refused guesses left nothing: what the burst did not use is still allowed.
        while store.throttle_attempt(&keys(limit), now, now + MINUTE).await.unwrap().is_some() {
            through += 1;
            assert!(through <= limit);
        }
        assert_eq!(through, limit);
    }
}
