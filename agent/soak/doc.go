// Package soak holds rekey's soak and load tests: a real agent in a child
// process is fed thousands of payload changes, killed with SIGKILL at random
// moments and checked after every restart, and its local API is loaded with
// hundreds of clients and event subscribers while rotations run.
package soak
