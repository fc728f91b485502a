//! Secrets shared by every process on one database: the first value stored stays.

backend_tests! {
    async fn a_shared_secret_is_the_first_one_stored(store) {
        let first = store.shared_secret("link_key", "aaaa").await.unwrap();
        assert_eq!(first, "aaaa");
        // Another process (or a restart) offering its own fresh value gets the stored one.
        let again = store.shared_secret("link_key", "bbbb").await.unwrap();
        assert_eq!(again, "aaaa");
        // Each name is its own secret.
        let other = store.shared_secret("other", "cccc").await.unwrap();
        assert_eq!(other, "cccc");
    }
}
