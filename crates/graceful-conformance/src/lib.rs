//! The conformance suite of the `graceful` adapter contract: every
//! behaviour that can be checked in one process, written once, run by every
//! adapter.
//!
//! An adapter proves itself with one line in its `tests/conformance.rs`:
//!
//! ```ignore
//! graceful_conformance::suite!(graceful_tokio);
//! ```
//!
//! The macro implements [`Adapter`] from the adapter crate's exported names
//! (`Runtime::new`, `serve_on`, `Stream`) — the names user code calls — and
//! adds one `#[test]` per scenario, with the same names for every adapter,
//! so `cargo test -p ADAPTER --test conformance -- --list` lists the same
//! scenarios everywhere.
//!
//! The suite drives real loopback sockets with blocking clients, times
//! deadlines with a [`ManualClock`] and feeds signals from a [`scripted`]
//! source, so signal and deadline behaviour is deterministic. Real OS
//! signals are exercised by the end-to-end tests, against real processes.

#![forbid(unsafe_code)]

mod adapter;
mod clock;
pub mod fixture;
#[cfg(feature = "http")]
mod h2;
pub mod harness;
#[cfg(feature = "http")]
pub mod http;
pub mod random;
#[cfg(feature = "http")]
pub mod random_http;
pub mod scenarios;
mod script;

pub use adapter::Adapter;
pub use clock::{ManualClock, ManualSleep, TestRuntime, TestSleep};
pub use script::{scripted, SignalScript};

#[doc(hidden)]
pub mod __private {
    pub use futures;
    pub use graceful_core;
    #[cfg(feature = "http")]
    pub use graceful_http;
}

/// Every scenario's name, in order. Kept with the macro so the list is
/// written once.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_scenario {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            core_waiters_wake_on_the_runtime,
            core_drain_deadline_on_manual_clock,
            b1_first_signal_triggers,
            b1_hangup_and_quit_are_opt_in,
            b2_second_signal_forces_with_128_plus_signo,
            b2_third_signal_exits_at_once,
            b3_early_signal_is_not_lost,
            b3_burst_counts_each_signal_and_triggers_once,
            b4_new_connects_refused_after_close,
            b4_queued_connections_are_served_before_close,
            b4_stop_before_serve_starts_serves_the_backlog,
            b15_pre_drain_keeps_accepting_then_refuses,
            one_descriptor_per_connection,
            b5_serve_returns_only_after_drain,
            a_listener_that_fails_for_good_stops_the_server_with_an_error,
            b6_in_flight_request_completes,
            b7_idle_connection_closed_at_trigger,
            b7_a_connection_told_idle_is_shut_down_before_its_handler_runs,
            b7_a_read_after_an_idle_close_takes_nothing,
            b7_new_connection_gets_the_first_request_grace,
            b8_drain_seen_promptly,
            b9_deadline_cuts_remaining_connections_and_reports,
            b9_a_force_during_pre_drain_reports_only_connections,
            b10_panicking_handler_releases_its_guard,
            b10_a_handler_that_panics_before_its_future_costs_its_connection_alone,
            b17_exit_code_zero_when_drained_and_requested_code_kept,
            conn_handler_sees_the_trigger,
            max_connections_waits_instead_of_dropping,
            max_connections_full_at_the_close_still_serves_the_queued,
            order_stage_after_server_starts_when_it_drained,
            forced_from_code_cuts_at_once,
            a_cancelled_serve_leaves_busy_connections_to_the_force,
            a_cancelled_serve_ends_the_reads_of_its_idle_connections,
            signal_stops_a_server_gracefully,
            randomized_stop_over_fixed_seeds,
        }
    };
}

/// Every HTTP scenario's name (the `http` module's).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_http_scenario {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            http_b14_readiness_200_then_503,
            http_b16_upgraded_connection_survives_trigger_and_is_forced_at_deadline,
            http_b16_upgraded_handler_sees_the_trigger_and_drains,
            http_b16_an_upgraded_handlers_shutdown_is_a_half_close,
            http_b16_upgrade_after_the_trigger_keeps_connection_upgrade_alone,
            http_b6_request_pipelined_behind_a_response_in_progress_is_served,
            http_b6_requests_pipelined_behind_a_response_after_the_trigger_are_served,
            http_b6_a_response_to_a_request_that_asked_for_an_upgrade_is_sent_whole,
            http_b6_a_request_whose_head_began_before_the_close_is_served,
            http_b7_a_first_request_unfinished_when_its_grace_ends_is_closed,
            http_b13_a_stream_above_the_final_goaway_is_refused_unprocessed,
            http_b13_an_idle_http2_client_that_never_answers_the_ping_is_closed_after_the_grace,
            http_b10_a_panicking_handler_costs_its_request_alone,
            http_b9_a_slow_forced_hook_elsewhere_does_not_delay_the_cut_of_an_upgrade,
            http_b12_the_close_lingers_only_while_a_body_is_not_all_read,
            http_b12_a_request_hyper_rejects_gets_its_answer_before_the_close,
            http_b12_a_first_request_rejected_in_its_grace_lingers_past_it,
            http_b12_an_http2_upload_left_unread_lingers_past_later_streams,
            http_b12_a_linger_ends_before_the_stops_deadline,
            http_a_cancelled_serve_closes_its_idle_keep_alive_connections,
            http_randomized_stop_over_fixed_seeds,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_tests {
    (($adapter:ty) $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name::<$adapter>();
            }
        )*
    };
}

/// Instantiates the suite for the adapter crate `$rt` (its crate name, as
/// in `use $rt;`): implements [`Adapter`] with the crate's contract names and
/// adds one `#[test]` per scenario.
#[macro_export]
macro_rules! suite {
    ($rt:ident) => {
        /// The adapter under test, through its contract names.
        struct ContractAdapter;

        impl $crate::Adapter for ContractAdapter {
            type Runtime = $rt::Runtime;
            type Stream = $rt::Stream;

            fn runtime() -> Self::Runtime {
                $rt::Runtime::new().expect("the adapter's runtime starts")
            }

            fn idle(
                stream: &Self::Stream,
            ) -> ::std::sync::Arc<$crate::__private::graceful_core::server::Idle> {
                stream.idle().clone()
            }

            fn serve<R, H, Fut>(
                rt: &R,
                listener: ::std::net::TcpListener,
                shutdown: &$crate::__private::graceful_core::Shutdown,
                config: $crate::__private::graceful_core::ServeConfig,
                handler: H,
            ) -> $crate::__private::futures::future::BoxFuture<
                'static,
                ::std::io::Result<$crate::__private::graceful_core::Outcome>,
            >
            where
                R: $crate::__private::graceful_core::Runtime,
                H: FnMut(Self::Stream, $crate::__private::graceful_core::Conn) -> Fut
                    + Send
                    + 'static,
                Fut: ::std::future::Future<Output = ::std::io::Result<()>> + Send + 'static,
            {
                let rt = rt.clone();
                let shutdown = shutdown.clone();
                Box::pin(
                    async move { $rt::serve_on(&rt, listener, &shutdown, config, handler).await },
                )
            }
        }

        $crate::__for_each_scenario!(__scenario_tests!(ContractAdapter));
    };
}
