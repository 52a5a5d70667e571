//! Twin queries and job queries, paged with `x-ms-continuation`.

use crate::Result;
use crate::client::{Call, Retry, ServiceClient};
use bytes::Bytes;
use futures_core::Stream;
use iot_common::{JobResponse, Twin};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

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

/// A page as fetched: its items (JSON not yet typed), `x-ms-continuation`, `x-ms-item-type`.
type Page = (Bytes, Option<String>, Option<String>);

/// A page request in flight. It owns everything it needs, so a dropped `next`/`next_page`
/// leaves it here and the next call (or `poll_next`) carries on with the same request.
type Fetch = Pin<Box<dyn Future<Output = Result<Page>> + Send>>;

/// A paged query. Pull items with [`Query::next`] or as a [`futures_core::Stream`], whole
/// pages with [`Query::next_page`], or everything with [`Query::collect_all`]. At most one
/// page is buffered.
pub struct Query<T> {
    client: ServiceClient,
    source: Source,
    page_size: Option<u32>,
    continuation: Option<String>,
    done: bool,
    buffer: VecDeque<T>,
    item_type: Option<String>,
    /// The mutex is never locked (`poll_page` has `&mut self` and uses `get_mut`); it makes
    /// the query `Sync`, which a boxed future alone is not.
    fetch: Mutex<Option<Fetch>>,
    _items: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("source", &self.source)
            .field("page_size", &self.page_size)
            .field("done", &self.done)
            .field("buffered", &self.buffer.len())
            .field(
                "fetching",
                &self
                    .fetch
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some(),
            )
            .finish_non_exhaustive()
    }
}

async fn fetch_page(
    client: ServiceClient,
    source: Source,
    page_size: Option<u32>,
    continuation: Option<String>,
) -> Result<Page> {
    let mut call = match &source {
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
    if let Some(n) = page_size {
        call = call.header("x-ms-max-item-count", n.to_string());
    }
    if let Some(c) = continuation {
        call = call.header("x-ms-continuation", c);
    }
    let answer = client.send(call).await?;
    let item_type = answer.header("x-ms-item-type").map(str::to_owned);
    let continuation = answer
        .header("x-ms-continuation")
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    Ok((answer.body, continuation, item_type))
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
            fetch: Mutex::new(None),
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

    /// Polls the page request in flight (starting one if needed); the continuation advances
    /// only when a page has arrived.
    fn poll_page(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<T>>>> {
        if self.done {
            return Poll::Ready(Ok(None));
        }
        let slot = self
            .fetch
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fetch = slot.get_or_insert_with(|| {
            Box::pin(fetch_page(
                self.client.clone(),
                self.source.clone(),
                self.page_size,
                self.continuation.clone(),
            ))
        });
        let result = std::task::ready!(fetch.as_mut().poll(cx));
        *slot = None;
        let (body, continuation, item_type) = result?;
        self.item_type = item_type;
        self.continuation = continuation;
        self.done = self.continuation.is_none();
        Poll::Ready(Ok(Some(serde_json::from_slice(&body)?)))
    }

    /// The next page, or `None` after the last one.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_service::ServiceClient) -> iot_service::Result<()> {
    /// let mut q = client.query("SELECT * FROM devices").page_size(100);
    /// while let Some(page) = q.next_page().await? {
    ///     println!("{} twins", page.len());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The hub's answer (400 with the position of a syntax error, 401, 429, …).
    ///
    /// # Cancel safety
    /// Cancel-safe: the request in flight stays with the query and the next call carries on
    /// with it; the continuation advances only when a page has arrived.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>> {
        std::future::poll_fn(|cx| self.poll_page(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            match std::task::ready!(self.poll_page(cx)) {
                Ok(Some(page)) => self.buffer.extend(page),
                Ok(None) => return Poll::Ready(None),
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// The next item, fetching pages as needed; `None` at the end (and after an error).
    ///
    /// # Cancel safety
    /// Cancel-safe: an item is removed from the buffer only when it is returned, and a page
    /// request dropped half-way is carried on by the next call (see [`Query::next_page`]).
    pub async fn next(&mut self) -> Option<Result<T>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
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

    /// The items as a `Stream`; `Query` is one itself, this only hides the page API.
    pub fn into_stream(self) -> impl Stream<Item = Result<T>> + Send
    where
        T: Send + 'static,
    {
        self
    }
}

// `Query` holds no self-references (the request in flight is boxed), so it can be moved
// between polls.
impl<T> Unpin for Query<T> {}

impl<T: DeserializeOwned> Stream for Query<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_item(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let upper = if self.done {
            Some(self.buffer.len())
        } else {
            None
        };
        (self.buffer.len(), upper)
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
