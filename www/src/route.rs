//! Hash routes: which view the dashboard shows.
//!
//! The route lives in the app state (see [`crate::state`]) and mirrors `location.hash`, so the
//! back button works and a device's detail can be bookmarked, without a router crate. A device
//! id is written into the hash with the same percent-encoding as its meta topic level
//! ([`switchboard_devices::encode_id`]).

use switchboard_devices::{DeviceId, decode_id, encode_id};

/// A view of the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// The grid of plugs grouped by room: `#/` (or no hash).
    #[default]
    Home,
    /// One device in detail: `#/device/<encoded id>`.
    Device(DeviceId),
    /// The raw topic tree: `#/topics`.
    Topics,
    /// Broker URL, theme, sign-out: `#/settings`.
    Settings,
}

impl Route {
    /// Reads a `location.hash` (with or without the leading `#`); anything unknown is
    /// [`Route::Home`].
    #[must_use]
    pub fn parse(hash: &str) -> Self {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        match path {
            "topics" => Self::Topics,
            "settings" => Self::Settings,
            _ => path
                .strip_prefix("device/")
                .and_then(|level| decode_id(level).ok())
                .filter(|id| !id.as_str().is_empty())
                .map_or(Self::Home, Self::Device),
        }
    }

    /// The hash for this route, with the leading `#`.
    #[must_use]
    pub fn to_hash(&self) -> String {
        match self {
            Self::Home => "#/".to_owned(),
            Self::Device(id) => format!("#/device/{}", encode_id(id)),
            Self::Topics => "#/topics".to_owned(),
            Self::Settings => "#/settings".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for route in [
            Route::Home,
            Route::Topics,
            Route::Settings,
            Route::Device(DeviceId::from("z2m:living/lamp #2")),
        ] {
            assert_eq!(Route::parse(&route.to_hash()), route);
        }
    }

    #[test]
    fn unknown_is_home() {
        assert_eq!(Route::parse(""), Route::Home);
        assert_eq!(Route::parse("#/nope"), Route::Home);
        assert_eq!(Route::parse("#/device/"), Route::Home);
        assert_eq!(Route::parse("#/device/%zz"), Route::Home);
        assert_eq!(
            Route::parse("#/device/tasmota:kitchen"),
            Route::Device(DeviceId::from("tasmota:kitchen"))
        );
    }
}
