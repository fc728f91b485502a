//! Public links: make, list and revoke them (`/api/v1/links`).

use cairn_proto::{LinkCreateRequest, LinkInfo, LinkListResponse, LinkRevokeRequest};
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;

use crate::client::{with_retries, Client};
use crate::error::{ClientError, RetryPolicy};

impl Client {
    /// `POST /api/v1/links`: makes a public link and returns it (its `url` is what to
    /// hand out). Not retried once sent: a repeat would make a second link.
    pub async fn create_link(&self, request: &LinkCreateRequest) -> Result<LinkInfo, ClientError> {
        let response = self
            .send_once(self.request(Method::POST, "links").json(request))
            .await?;
        decode(response, "POST links").await
    }

    /// `GET /api/v1/links`: the caller's links, newest first, revoked ones included.
    pub async fn list_links(&self) -> Result<Vec<LinkInfo>, ClientError> {
        let response = with_retries(RetryPolicy::Idempotent, || {
            self.send_once(self.request(Method::GET, "links"))
        })
        .await?;
        Ok(decode::<LinkListResponse>(response, "GET links")
            .await?
            .links)
    }

    /// `POST /api/v1/links/revoke`: the link stops working at once. Revoking it again
    /// changes nothing, so this is retried.
    pub async fn revoke_link(&self, id: i64) -> Result<(), ClientError> {
        let request = LinkRevokeRequest { id };
        with_retries(RetryPolicy::Idempotent, || {
            self.send_once(self.request(Method::POST, "links/revoke").json(&request))
        })
        .await
        .map(drop)
    }
}

async fn decode<T: DeserializeOwned>(response: Response, endpoint: &str) -> Result<T, ClientError> {
    let body = response.bytes().await?;
    serde_json::from_slice(&body).map_err(|error| ClientError::Decode {
        endpoint: endpoint.to_owned(),
        error,
    })
}
