//! The dashboard's components, one per file, each with its `XxxProps`.
//!
//! Views that show much of the state (`Grid`, `DeviceDetail`, `TopicTree`, ...) read the state
//! context; leaves (`PlugCard`, `RelaySwitch`, `PowerChart`, ...) get view models as props and
//! only the stable dispatcher from context, so a message re-renders the cards it changed.

mod app;
mod banner;
mod device_detail;
mod grid;
mod login;
mod meta_form;
mod plug_card;
mod power_chart;
mod relay_switch;
mod room_section;
mod schedule_form;
mod schedule_item;
mod schedule_section;
mod settings_view;
mod toast;
mod toasts;
mod top_bar;
mod topic_tree;

pub use app::{App, AppProps};
pub use banner::{Banner, BannerProps};
pub use device_detail::{DeviceDetail, DeviceDetailProps};
pub use grid::Grid;
pub use login::{Login, LoginProps};
pub use meta_form::{MetaForm, MetaFormProps};
pub use plug_card::{PlugCard, PlugCardProps};
pub use power_chart::{PowerChart, PowerChartProps};
pub use relay_switch::{RelaySwitch, RelaySwitchProps};
pub use room_section::{RoomSection, RoomSectionProps};
pub use schedule_form::{ScheduleForm, ScheduleFormProps};
pub use schedule_item::{ScheduleItem, ScheduleItemProps};
pub use schedule_section::{ScheduleSection, ScheduleSectionProps};
pub use settings_view::SettingsView;
pub use toast::{Toast, ToastProps};
pub use toasts::Toasts;
pub use top_bar::TopBar;
pub use topic_tree::TopicTree;
