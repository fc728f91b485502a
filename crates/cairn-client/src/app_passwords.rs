//! App passwords: make, list and revoke the caller's (`/api/v1/account/app-passwords`),
//! the credentials WebDAV and other HTTP Basic clients sign in with.

use cairn_proto::{AppPasswordInfo, AppPasswordListResponse, AppPasswordRequest, NewAppPassword};
use reqwest::Method;

use crate::client::{with_retries, Client};
use crate::error::{ClientError, RetryPolicy};

const PATH: &str = "account/app-passwords";

impl Client {
    /// `POST /api/v1/account/app-passwords`: makes an app password named `name` and
    /// returns it with its secret, which the server shows this once. Not retried once
    /// sent: a repeat would be refused as a name that exists, and its secret lost.
    pub async fn create_app_password(&self, name: &str) -> Result<NewAppPassword, ClientError> {
        let request = AppPasswordRequest {
            name: name.to_owned(),
        };
        self.post_json(PATH, &request, RetryPolicy::ConnectOnly)
            .await
    }

    /// `GET /api/v1/account/app-passwords`: the caller's app passwords, oldest first.
    pub async fn list_app_passwords(&self) -> Result<Vec<AppPasswordInfo>, ClientError> {
        let listed: AppPasswordListResponse = self.get_json(PATH, &[]).await?;
        Ok(listed.app_passwords)
    }

    /// `DELETE /api/v1/account/app-passwords/{name}`: revokes one; its next request is
    /// refused. Not found (404) when the caller has none of that name.
    pub async fn revoke_app_password(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("{PATH}/{}", path_segment(name));
        with_retries(RetryPolicy::ConnectOnly, || {
            self.send_once(self.request(Method::DELETE, &path))
        })
        .await
        .map(drop)
    }
}

/// `name` as one segment of a URL's path: every byte but the unreserved ones
/// percent-encoded, so that a `/`, `%`, `?` or space in a name stays in its segment.
/// (`.` and `..` would still be taken for path steps; the server makes no app password
/// of either name.)
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_stay_in_one_path_segment() {
        assert_eq!(super::path_segment("phone"), "phone");
        assert_eq!(super::path_segment("a/b c?%"), "a%2Fb%20c%3F%25");
        assert_eq!(super::path_segment("übung"), "%C3%BCbung");
    }
}
