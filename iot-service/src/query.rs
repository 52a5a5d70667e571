//! Twin queries and job queries, paged with `x-ms-continuation`.

use crate::Result;
use crate::client::{Call, Retry, ServiceClient};
use futures_core::Stream;
use iot_common::{JobResponse, Twin};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::VecDeque;
use std::marker::PhantomData;

#[derive(Debug, Clone)]
enum Source {
    /// `POST {path}` with `{"query": …}`: twin queries, and the provisioning service's
    /// enrollment and registration queries.
    Post { path: Vec<String>, query: String },
    Jobs {
        job_type: Option<String>,
        status: Option<String>,
    },
}

/// A paged query. Pull items with [`Query::next`], whole pages with [`Query::next_page`],
/// everything with [`Query::collect_all`], or use it as a `Stream` via [`Query::into_stream`].
#[derive(Debug)]
pub struct Query<T> {
    client: ServiceClient,
    source: Source,
    page_size: Option<u32>,
    continuation: Option<String>,
    done: bool,
    buffer: VecDeque<T>,
    item_type: Option<String>,
    _items: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Query<T> {
    /// A query answered by `POST {path}` with `{"query": query}`.
    pub(crate) fn post(client: ServiceClient, path: &[&str], query: impl Into<String>) -> Self {
        let path = path.iter().map(|s| (*s).to_owned()).collect();
        Self::new(
            client,
            Source::Post {
                path,
                query: query.into(),
            },
        )
    }

    fn new(client: ServiceClient, source: Source) -> Self {
        Self {
            client,
            source,
            page_size: None,
            continuation: None,
            done: false,
            buffer: VecDeque::new(),
            item_type: None,
            _items: PhantomData,
        }
    }

    /// Items per page (`x-ms-max-item-count`; the hub may use less).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    /// The `x-ms-item-type` of the last page (`twin`, `raw`, `deviceJob`, `jobResponse`).
    pub fn item_type(&self) -> Option<&str> {
        self.item_type.as_deref()
    }

    /// The next page, or `None` after the last one.
    ///
    /// # Errors
    /// The hub's answer (400 with the position of a syntax error, 401, 429, …).
    ///
    /// # Cancel safety
    /// Cancel-safe: the continuation advances only when a page has arrived, so after a dropped
    /// call the next one asks for the same page again.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>> {
        if self.done {
            return Ok(None);
        }
        let mut call = match &self.source {
            Source::Post { path, query } => {
                Call::new(Method::POST, path.iter().map(String::as_str).collect())
                    .json(&serde_json::json!({ "query": query }))?
            }
            Source::Jobs { job_type, status } => {
                let mut c = Call::new(Method::GET, vec!["jobs", "v2", "query"]);
                if let Some(t) = job_type {
                    c.query.push(("jobType", t.clone()));
                }
                if let Some(s) = status {
                    c.query.push(("jobStatus", s.clone()));
                }
                c
            }
        }
        .retry(Retry::Idempotent);
        if let Some(n) = self.page_size {
            call = call.header("x-ms-max-item-count", n.to_string());
        }
        if let Some(c) = &self.continuation {
            call = call.header("x-ms-continuation", c.clone());
        }
        let answer = self.client.send(call).await?;
        self.item_type = answer.header("x-ms-item-type").map(str::to_owned);
        self.continuation = answer
            .header("x-ms-continuation")
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        self.done = self.continuation.is_none();
        Ok(Some(answer.json()?))
    }

    /// The next item, fetching pages as needed; `None` at the end.
    ///
    /// # Cancel safety
    /// Cancel-safe: an item is removed from the buffer only when it is returned, and a page
    /// fetch dropped half-way is asked for again (see [`Query::next_page`]).
    pub async fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(Ok(item));
            }
            match self.next_page().await {
                Ok(Some(page)) => self.buffer.extend(page),
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Every remaining item.
    ///
    /// # Errors
    /// The first failing page's error.
    ///
    /// # Cancel safety
    /// Dropping the future drops the items read so far; the hub keeps no state for a query,
    /// so nothing else is lost.
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        let mut all: Vec<T> = self.buffer.drain(..).collect();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// The items as a `Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Result<T>> + Send
    where
        T: Send + 'static,
    {
        futures_util::stream::unfold(
            self,
            |mut q| async move { q.next().await.map(|item| (item, q)) },
        )
    }
}

impl ServiceClient {
    /// Runs an IoT Hub query over device twins (`SELECT * FROM devices WHERE …`).
    ///
    /// ```no_run
    /// # async fn demo(client: iot_service::ServiceClient) -> iot_service::Result<()> {
    /// let mut q = client.query("SELECT * FROM devices WHERE tags.location.region = 'US'").page_size(100);
    /// while let Some(twin) = q.next().await {
    ///     println!("{}", twin?.device_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn query(&self, sql: impl Into<String>) -> Query<Twin> {
        Query::post(self.clone(), &["devices", "query"], sql)
    }

    /// Runs a query whose rows are not twins (projections, aggregates, `devices.jobs`).
    pub fn query_raw(&self, sql: impl Into<String>) -> Query<Value> {
        Query::post(self.clone(), &["devices", "query"], sql)
    }

    /// Lists jobs, optionally filtered by type (`scheduleDeviceMethod`, `scheduleUpdateTwin`)
    /// and status (`completed`, `running`, …).
    pub fn query_jobs(&self, job_type: Option<&str>, status: Option<&str>) -> Query<JobResponse> {
        Query::new(
            self.clone(),
            Source::Jobs {
                job_type: job_type.map(str::to_owned),
                status: status.map(str::to_owned),
            },
        )
    }
}
