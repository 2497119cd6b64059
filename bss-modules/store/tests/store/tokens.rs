//! API tokens: created with a secret shown once, found by the secret, refused when revoked
//! or expired, and scoped for partners only.

use tollgate_store::{store_test, NewToken, Role, StoreError, TokenCheck, TOKEN_PREFIX};

use crate::at;

fn new_token(role: Role, scope: Option<&'static str>, expires_at: Option<jiff::Timestamp>) -> NewToken<'static> {
    NewToken { name: "test", role, scope_account_id: scope, expires_at }
}

store_test! {
    async fn a_token_is_found_by_its_secret_until_revoked(store) {
        let mut tx = store.begin().await.expect("begin");
        let (secret, token) = tx.create_token(new_token(Role::Care, None, None), at(0)).await.expect("create");
        let (other, _) = tx.create_token(new_token(Role::Admin, None, None), at(0)).await.expect("create");
        tx.commit().await.expect("commit");
        assert!(secret.expose().starts_with(TOKEN_PREFIX));
        assert_ne!(secret.expose(), other.expose());
        assert!(!format!("{secret:?} {token:?}").contains(&secret.expose()[3..]), "Debug shows no secret");

        assert_eq!(store.check_token(secret.expose(), at(1)).await.expect("check"), TokenCheck::Valid(token.clone()));
        assert_eq!(token.role, Role::Care);
        // Not stored in clear: the database holds only hashes.
        let tokens = store.tokens().await.expect("list");
        assert_eq!(tokens.len(), 2);

        for wrong in ["", "tg_", &secret.expose().to_uppercase(), &format!("{}0", secret.expose()), &secret.expose()[..20]] {
            assert_eq!(store.check_token(wrong, at(1)).await.expect("check"), TokenCheck::Unknown, "{wrong:?}");
        }
        let mut flipped = secret.expose().to_owned();
        let last = if flipped.ends_with('0') { "1" } else { "0" };
        flipped.replace_range(flipped.len() - 1.., last);
        assert_eq!(store.check_token(&flipped, at(1)).await.expect("check"), TokenCheck::Unknown);

        let mut tx = store.begin().await.expect("begin");
        let revoked = tx.revoke_token(token.id, at(5)).await.expect("revoke");
        assert_eq!(tx.revoke_token(token.id, at(9)).await.expect("revoke again").revoked_at, Some(at(5)));
        assert!(matches!(tx.revoke_token(9999, at(5)).await, Err(StoreError::NotFound { .. })));
        tx.commit().await.expect("commit");
        assert_eq!(revoked.revoked_at, Some(at(5)));
        assert!(matches!(store.check_token(secret.expose(), at(6)).await.expect("check"), TokenCheck::Revoked(_)));
        assert!(matches!(store.check_token(other.expose(), at(6)).await.expect("check"), TokenCheck::Valid(_)));
    }
}

store_test! {
    async fn a_token_expires(store) {
        let mut tx = store.begin().await.expect("begin");
        let (secret, _) = tx.create_token(new_token(Role::Finance, None, Some(at(100))), at(0)).await.expect("create");
        tx.commit().await.expect("commit");
        assert!(matches!(store.check_token(secret.expose(), at(99)).await.expect("check"), TokenCheck::Valid(_)));
        assert!(matches!(store.check_token(secret.expose(), at(100)).await.expect("check"), TokenCheck::Expired(_)));
    }
}

store_test! {
    async fn only_a_partner_token_has_a_scope_and_it_must_have_one(store) {
        let mut tx = store.begin().await.expect("begin");
        let (secret, token) = tx.create_token(new_token(Role::Partner, Some("ACME-ROOT"), None), at(0)).await.expect("create");
        assert_eq!(token.scope_account_id.as_deref(), Some("ACME-ROOT"));
        for refused in [
            new_token(Role::Partner, None, None),
            new_token(Role::Partner, Some(""), None),
            new_token(Role::ReadOnly, Some("ACME-ROOT"), None),
            NewToken { name: " ", ..new_token(Role::Admin, None, None) },
        ] {
            let result = tx.create_token(refused, at(0)).await;
            assert!(matches!(result, Err(StoreError::Invalid { .. })), "{refused:?}: {result:?}");
        }
        tx.commit().await.expect("commit");
        match store.check_token(secret.expose(), at(1)).await.expect("check") {
            TokenCheck::Valid(found) => assert_eq!((found.role, found.scope_account_id.as_deref()), (Role::Partner, Some("ACME-ROOT"))),
            other => panic!("{other:?}"),
        }
    }
}

store_test! {
    async fn every_role_can_hold_a_token_product_manager_included(store) {
        // Migration 5 widened the role check (SQLite rebuilt the table with its rows).
        let mut tx = store.begin().await.expect("begin");
        for role in Role::ALL {
            let scope = (role == Role::Partner).then_some("ROOT");
            let (secret, token) = tx.create_token(new_token(role, scope, None), at(0)).await.expect("create");
            assert_eq!(token.role, role);
            assert_eq!(Role::parse(role.as_str()), Some(role));
            drop(secret);
        }
        tx.commit().await.expect("commit");
        let listed = store.tokens().await.expect("list");
        assert!(listed.iter().any(|token| token.role == Role::ProductManager), "{listed:?}");
        let ids: Vec<i64> = listed.iter().map(|token| token.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids keep growing: {ids:?}");
    }
}
