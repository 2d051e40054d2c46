// Package payments is Hitch's payments service: when a ride finishes it
// charges the rider, takes the service fee and pays the driver, exactly
// once each, through the simulated card processor (hitch/cardprocessor).
//
// The full description (saga steps, compensations, ledger, keys) is
// written in the section "Payments" of docs/hitch.md and summed up here.
package payments
