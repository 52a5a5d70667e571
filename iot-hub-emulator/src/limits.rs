//! Every bound the emulator enforces on what clients send it, in one place (RELIABILITY.md lists them).

/// Longest query (`POST /devices/query`) and job `queryCondition`, in bytes, as the hub allows.
pub(crate) const MAX_QUERY_LEN: usize = 8192;
/// Deepest nesting of a query expression: parentheses, arrays, calls, `NOT`, unary minus and
/// each operator of an arithmetic chain. Recursive parsing and evaluation use stack per level.
pub(crate) const MAX_QUERY_NESTING: usize = 64;

/// Longest a device connection may stay open on one token: a token that expires later (up to
/// `se=18446744073709551615`) closes the connection after this long, as a timer cannot reach
/// past the clock's range. The device reconnects with the same token.
pub(crate) const MAX_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// Largest `maxExecutionTimeInSeconds` a job may ask for: the hub's field is an int64. Larger
/// values get 400.
pub(crate) const MAX_JOB_EXECUTION_SECS: u64 = i64::MAX as u64;
/// A job's timer runs at most this long (longer limits are clamped to it, as a timer cannot
/// reach past the clock's range).
pub(crate) const MAX_JOB_TIMER: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// A write to a device must finish within this; a device that stops reading is disconnected
/// (token expiry, disable, delete and disconnect-all still fire while a write is blocked).
pub(crate) const MQTT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The last bytes to a closing connection (a DISCONNECT reason, TLS close) get this long.
pub(crate) const MQTT_FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// A connection must send its CONNECT within this.
pub(crate) const MQTT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS handshake on the HTTPS port must finish within this, or the connection is closed.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default for how long an HTTPS connection may go without a complete request head (idle
/// between requests, silent after the handshake, or stalled in a head) before it is closed.
pub(crate) const HTTP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Default bytes of events each partition of the Event Hub-compatible endpoint keeps (bodies,
/// properties and identity); the oldest are dropped first (`--event-retention-bytes`).
pub(crate) const EVENT_RETENTION_BYTES: u64 = 64 * 1024 * 1024;
/// Events an Event Hub receiver link takes from its partition at a time: what one link holds
/// besides the partition itself while it waits for the client's credit.
pub(crate) const EVENT_READ_BATCH: usize = 64;

/// Default bound on the bytes the telemetry buffer keeps (bodies plus properties); the oldest
/// messages are dropped first. `GET /emulator/telemetry` pages through it.
pub(crate) const TELEMETRY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most telemetry records one `GET /emulator/telemetry` page returns (`?top=` may ask fewer).
pub(crate) const TELEMETRY_PAGE_MAX: usize = 1000;
/// About how many bytes one `GET /emulator/telemetry` page holds (at least one record).
pub(crate) const TELEMETRY_PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Longest method name a direct method call may carry. The hub documents no number; DTDL
/// names are at most 64 characters, so `component*command` fits, with room to spare.
pub(crate) const MAX_METHOD_NAME_LEN: usize = 128;

/// Unfinished jobs (scheduled, queued, running) the hub holds at once; one more gets 429
/// ThrottlingMaxActiveJobCountExceeded.
pub(crate) const MAX_ACTIVE_JOBS: usize = 100;
/// Jobs kept for `GET /jobs/v2/{id}` and queries; past this the oldest finished one is
/// forgotten when a new one is created.
pub(crate) const MAX_KEPT_JOBS: usize = 1000;

/// Web console: recent telemetry messages a new live stream (`/console/events`) starts with.
pub(crate) const CONSOLE_EVENTS_BACKLOG: u64 = 100;
/// Web console: messages, and about this many bytes of them, one live stream reads from the
/// telemetry buffer per poll; it holds no more than that.
pub(crate) const CONSOLE_EVENTS_POLL_MAX: usize = 200;
pub(crate) const CONSOLE_EVENTS_POLL_MAX_BYTES: usize = 1024 * 1024;
/// Web console: lifetime of the `iothubowner` token handed to the page.
pub(crate) const CONSOLE_TOKEN_LIFETIME_SECS: u64 = 15 * 60;
/// Web console off loopback: how long a login lasts.
pub(crate) const CONSOLE_SESSION_SECS: u64 = 8 * 60 * 60;

/// Cloud-to-device feedback records the hub holds for the service (waiting or in an unsettled
/// batch). When full, the oldest waiting record is dropped for a new one, with a warning.
pub(crate) const MAX_FEEDBACK_RECORDS: usize = 10_000;
/// Records in one feedback batch (one AMQP message), as the hub batches them.
pub(crate) const MAX_FEEDBACK_BATCH: usize = 64;
/// How often the hub looks for expired cloud-to-device messages (`HubOps::advance_clock`
/// looks at once).
pub(crate) const C2D_EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);
