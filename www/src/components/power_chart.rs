//! The last hour of power as an SVG chart.

use yew::prelude::*;

use crate::vm::{self, ChartVm};

/// Props of [`PowerChart`].
#[derive(Properties, PartialEq, Debug)]
pub struct PowerChartProps {
    /// The geometry.
    pub chart: ChartVm,
}

/// A step line with a filled area, a y-scale label and the time axis ends.
#[function_component(PowerChart)]
pub fn power_chart(props: &PowerChartProps) -> Html {
    let c = &props.chart;
    if c.samples == 0 {
        return html! { <p class="chart-empty">{ "No power readings in the last hour." }</p> };
    }
    let desc = format!(
        "Power over the last hour, {} readings, scale up to {}",
        c.samples,
        vm::format_power(c.y_max)
    );
    html! {
        <figure class="chart">
            // The view box is vm::CHART_W × vm::CHART_H.
            <svg viewBox="0 0 300 100" preserveAspectRatio="none" role="img" aria-label={desc}>
                <line class="grid" x1="0" y1="50" x2="300" y2="50" />
                <path class="area" d={c.area.clone()} />
                <path class="line" d={c.line.clone()} vector-effect="non-scaling-stroke" />
            </svg>
            <figcaption>
                <span>{ "60 min ago" }</span>
                <span>{ format!("max {}", vm::format_power(c.y_max)) }</span>
                <span>{ "now" }</span>
            </figcaption>
        </figure>
    }
}
