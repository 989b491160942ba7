//! A fleet sharing state through a real `redis-server`: replay detection,
//! tokens and their locks, introspection answers, and the examples run as a
//! fleet. Without `redis-server` outside CI every test is reported
//! `ignored`, with the reason (`support::harness`).

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod fleet_examples;
mod fleet_introspection;
mod fleet_replay;
mod fleet_token_cache;
mod fleet_token_locks;

fn main() -> std::process::ExitCode {
    support::harness::run(
        support::redis::missing(),
        async_tests![
            fleet_examples::example_servers_share_replay_state_and_example_clients_share_tokens,
            fleet_introspection::two_replicas_ask_the_issuer_once,
            fleet_introspection::inactive_answers_are_shared_briefly,
            fleet_introspection::redis_killed_the_endpoint_is_asked,
            fleet_introspection::redis_slower_than_the_timeout_is_down,
            fleet_introspection::garbage_in_redis_is_a_miss,
            fleet_introspection::the_same_against_a_three_node_cluster,
            fleet_replay::a_proof_accepted_by_one_server_is_refused_by_the_other,
            fleet_replay::redis_killed_under_traffic_fails_closed_and_recovers_on_the_same_port,
            fleet_replay::redis_slower_than_the_timeout_is_down,
            fleet_replay::the_same_against_a_three_node_cluster,
            fleet_replay::a_cluster_node_killed_under_traffic_fails_closed_and_recovers,
            fleet_replay::a_past_expiry_is_refused_and_keys_expire_relatively,
            fleet_replay::a_silent_connection_is_replaced,
            fleet_token_cache::three_stacks_300_cold_calls_one_fetch_at_the_issuer,
            fleet_token_cache::redis_killed_during_2000_calls_fails_none,
            fleet_token_cache::garbage_in_redis_is_a_miss,
            fleet_token_cache::a_huge_value_in_redis_is_a_miss,
            fleet_token_cache::bearer_tokens_are_shared_only_when_allowed,
            fleet_token_cache::the_same_against_a_three_node_cluster,
            fleet_token_cache::dpop_bound_tokens_are_shared_by_processes_with_the_same_key_only,
            fleet_token_cache::a_cluster_node_killed_fails_no_call,
            fleet_token_locks::an_unbound_token_fetched_with_a_certificate_never_goes_to_redis,
            fleet_token_locks::a_token_endpoint_slower_than_the_old_lock_still_means_one_fetch,
            fleet_token_locks::unshareable_tokens_do_not_queue_the_fleet,
            fleet_token_locks::the_lock_holder_extends_its_lock_while_it_fetches,
            fleet_token_locks::caches_made_with_another_prefix_or_policy_share_the_counters,
        ],
    )
}
