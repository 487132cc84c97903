//! How Polarway's own programs use HTTP/2 and gRPC, shared by the worker, the gateway, the Rust
//! client and the load tester so that each side agrees with the others.

use std::time::Duration;

pub mod linger;

/// HTTP/2 flow-control windows sized for bulk transfers: the defaults (64 KiB) throttle loads.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// The largest HTTP/2 frame our programs accept (advertised in SETTINGS_MAX_FRAME_SIZE): a 1 MiB
/// message leaves as one DATA frame instead of 64 of the default 16 KiB.
pub const MAX_FRAME: u32 = 1 << 20;

/// The `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub mod grpc_timeout {
    use super::Duration;

    pub const HEADER: &str = "grpc-timeout";

    pub fn parse(v: &str) -> Option<Duration> {
        if v.len() < 2 || v.len() > 9 {
            return None;
        }
        let (digits, unit) = v.split_at(v.len() - 1);
        let n: u64 = digits.parse().ok()?;
        Some(match unit {
            "H" => Duration::from_secs(n.saturating_mul(3600)),
            "M" => Duration::from_secs(n.saturating_mul(60)),
            "S" => Duration::from_secs(n),
            "m" => Duration::from_millis(n),
            "u" => Duration::from_micros(n),
            "n" => Duration::from_nanos(n),
            _ => return None,
        })
    }

    /// The shortest exact-enough form: milliseconds, microseconds below one, seconds when the
    /// milliseconds would not fit in 8 digits.
    pub fn encode(d: Duration) -> String {
        let ms = d.as_millis();
        if ms == 0 {
            format!("{}u", d.as_micros().max(1))
        } else if ms < 100_000_000 {
            format!("{ms}m")
        } else {
            format!("{}S", d.as_secs().min(99_999_999))
        }
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_timeout::{encode, parse};
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("1x"), None);
        assert_eq!(parse("123456789S"), None);
        assert_eq!(encode(Duration::from_millis(1500)), "1500m");
        assert_eq!(encode(Duration::from_nanos(10)), "1u");
        let week = Duration::from_secs(7 * 86400);
        assert_eq!(parse(&encode(week)), Some(week));
    }
}
