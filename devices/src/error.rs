//! Error types of the crate: why an incoming message was ignored, why a command was refused, why
//! a meta topic could not be read.
//!
//! A bad message never changes a device: the registry reports the error from
//! [`crate::Registry::try_handle_message`] and keeps the last good state.

use thiserror::Error;

use crate::model::DeviceId;

/// Why an incoming message addressed to a known convention was not applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The payload is not UTF-8 where text is expected.
    #[error("{topic}: payload is not UTF-8")]
    InvalidUtf8 {
        /// The message's topic.
        topic: String,
    },
    /// The payload is not the JSON the topic carries.
    #[error("{topic}: invalid JSON: {source}")]
    InvalidJson {
        /// The message's topic.
        topic: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The payload is well formed but not a value the topic can carry (`maybe` for a relay).
    #[error("{topic}: unexpected value {value:?}")]
    InvalidValue {
        /// The message's topic.
        topic: String,
        /// The value, cut to 64 bytes.
        value: String,
    },
    /// A Home Assistant discovery config lacks something required.
    #[error("{topic}: invalid discovery config: {reason}")]
    InvalidDiscovery {
        /// The message's topic.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `switchboard/meta/<id>` topic whose id level does not decode.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The payload is larger than any message of the convention.
    #[error("{topic}: payload of {len} bytes is too large")]
    TooLarge {
        /// The message's topic.
        topic: String,
        /// The payload's length.
        len: usize,
    },
}

/// Why [`crate::Registry::command`] produced no message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No device with that id.
    #[error("unknown device {0}")]
    UnknownDevice(DeviceId),
    /// The device has no relay with that index.
    #[error("device {id} has no relay {relay}")]
    UnknownRelay {
        /// The device.
        id: DeviceId,
        /// The 0-based relay index asked for.
        relay: u8,
    },
    /// The device's last will says it is offline: its toggles are disabled.
    #[error("device {0} is offline")]
    Offline(DeviceId),
    /// The device is known but announces no command topic for that relay (a Home Assistant
    /// entity without `command_topic`).
    #[error("device {id} relay {relay} cannot be commanded")]
    NotCommandable {
        /// The device.
        id: DeviceId,
        /// The 0-based relay index.
        relay: u8,
    },
}

/// Why a `switchboard/meta/<id>` topic level does not decode into a [`DeviceId`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A `%` not followed by two hex digits, or an escape that does not decode to UTF-8.
    #[error("meta topic level {0:?} is not a valid encoded device id")]
    BadEncoding(String),
    /// More levels after the id, or an empty id.
    #[error("meta topic {0:?} does not have the form switchboard/meta/<id>")]
    BadTopic(String),
}
