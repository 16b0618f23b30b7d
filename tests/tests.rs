//! lethe's integration tests: the real server on `127.0.0.1:0`, spoken to over HTTP, once per storage
//! backend; and the real `lethe` binary for the command line.

mod support;

mod abuse;
mod at_rest;
mod backup;
mod browser;
mod cli;
mod client;
mod client_cli;
mod crash;
mod delivery;
mod delivery_mail;
mod deploy;
mod faults;
mod hostile_http;
mod http;
mod limits;
mod mirror;
mod redis;
mod redis_cluster;
mod redis_crash;
mod redis_nodes;
mod requests;
mod strict_input;
mod team_cli;
mod team_clients;
mod team_http;
mod team_login;
mod team_resources;
mod team_users;
mod v1;
mod web;
mod web_app;
