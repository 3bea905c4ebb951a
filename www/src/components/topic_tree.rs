//! The raw topic view: every topic seen with its last payload.

use yew::prelude::*;

use crate::hooks::use_app;
use crate::vm;

/// The live topic tree, filtered by the search box.
#[function_component(TopicTree)]
pub fn topic_tree() -> Html {
    let app = use_app();
    let rows = vm::topic_rows(&app.topics, &app.search);
    html! {
        <section class="topics" aria-labelledby="topics-title">
            <h2 id="topics-title">{ format!("Topics ({})", app.topics.len()) }</h2>
            if rows.is_empty() {
                <p class="empty">{ "No messages yet." }</p>
            } else {
                <ul class="tree" role="tree">
                    { for rows.into_iter().map(|r| {
                        let style = format!("--depth:{}", r.depth);
                        html! {
                            <li key={r.topic.clone()} role="treeitem" aria-level={(r.depth + 1).to_string()} {style} title={r.topic.clone()}>
                                <span class="level">{ r.level }</span>
                                if let Some(e) = r.entry {
                                    <code class="payload">{ e.preview }</code>
                                    <span class="meta">
                                        { if e.retained { "retained · " } else { "" } }
                                        { format!("{} B · ×{}", e.len, e.count) }
                                    </span>
                                }
                            </li>
                        }
                    }) }
                </ul>
            }
        </section>
    }
}
