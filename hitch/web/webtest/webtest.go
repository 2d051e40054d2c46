// Package webtest drives Hitch's web app in a real browser (Debian's
// chromium, headless, through chromedp), for the web app's own test against
// a fake API and for the end-to-end test against a running Hitch.
package webtest

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser: $HITCH_CHROMIUM, else chromium,
// chromium-browser or google-chrome on PATH; without one the test skips.
func chromiumPath(t testing.TB) string {
	if p := os.Getenv("HITCH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary on PATH (apt-get install chromium, or set HITCH_CHROMIUM): the browser test cannot run")
	return ""
}

// RideFlow drives the web app at base (a Hitch gateway, or anything
// serving the app and the public API) in headless Chromium, in two tabs:
// a driver registers, logs in and offers a route; a rider registers, logs
// in, picks a pickup on the map, requests a ride along the route and sees
// driver_found; the driver sees passenger_found, starts and finishes; the
// rider sees the ride end, the receipt and the charge; the driver sees the
// payout and earnings; the operator view loads. Without a browser it skips
// the test, saying so. HITCH_WEB_SCREENSHOTS=DIR keeps rider.png and
// driver.png.
func RideFlow(t testing.TB, base string) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	browser := chromiumPath(t)
	base = strings.TrimSuffix(base, "/")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx, opts...)
	defer allocCancel()
	driverTab, driverCancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer driverCancel()
	riderTab, riderCancel := chromedp.NewContext(driverTab) // a second tab of the same browser
	defer riderCancel()

	run := func(tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			page, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
		}
	}
	poll := func(expr string, within time.Duration) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond))
	}
	// waitText polls until the element's text contains want.
	waitText := func(sel, want string) chromedp.Action[chromedp.Void] {
		return poll(fmt.Sprintf(`(document.querySelector(%q)||{textContent:""}).textContent.includes(%q)`, sel, want), 30*time.Second)
	}
	stamp := time.Now().UnixNano()
	account := func(role string) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(base + "/#" + role),
			chromedp.WaitVisible(chromedp.ID(role + "-email")),
			chromedp.SendKeys(chromedp.ID(role+"-name"), "Test "+role),
			chromedp.SendKeys(chromedp.ID(role+"-email"), fmt.Sprintf("%s-%d@example.test", role, stamp)),
			chromedp.SendKeys(chromedp.ID(role+"-password"), "correct horse battery staple"),
			chromedp.Click(chromedp.ID(role + "-register")),
			waitText("#"+role+"-auth-status", "Registered"),
			chromedp.Click(chromedp.ID(role + "-login")),
			waitText("#"+role+"-auth-status", "Signed in"),
		}
	}

	// The driver: account, a route typed in (the keyboard path), available.
	// Against a live Hitch, drivers of earlier runs may still offer seats
	// on this route: shift it east by a random amount (up to 1.5 miles).
	shift := mrand.Float64() * 0.03
	lon := func(v float64) string { return strconv.FormatFloat(v+shift, 'f', 5, 64) }
	run(driverTab, "driver signs up", account("driver")...)
	run(driverTab, "driver sets availability",
		chromedp.SetValue(chromedp.ID("driver-from-lat"), "40.72"), chromedp.SetValue(chromedp.ID("driver-from-lon"), lon(-74.00)),
		chromedp.SetValue(chromedp.ID("driver-to-lat"), "40.78"), chromedp.SetValue(chromedp.ID("driver-to-lon"), lon(-73.96)),
		chromedp.Click(chromedp.ID("driver-availability")),
		waitText("#driver-status", "available"))

	// The rider: account, pickup picked on the map (a real mouse click),
	// then the exact points typed, on the driver's route.
	run(riderTab, "rider signs up", account("rider")...)
	type box struct{ X, Y, W, H float64 }
	rect, err := chromedp.Run(riderTab, chromedp.Evaluate[box](`(() => { const r = document.querySelector("#rider-map").getBoundingClientRect(); return {X: r.x, Y: r.y, W: r.width, H: r.height}; })()`))
	if err != nil {
		t.Fatalf("locating the map: %v", err)
	}
	run(riderTab, "map click sets the pickup",
		chromedp.MouseClickXY(rect.X+rect.W/2, rect.Y+rect.H/2),
		poll(`document.querySelector("#rider-from-lat").value !== "" && Math.abs(parseFloat(document.querySelector("#rider-from-lat").value) - 40.75) < 0.002`, 5*time.Second))
	run(riderTab, "rider requests a ride",
		chromedp.SetValue(chromedp.ID("rider-from-lat"), "40.735"), chromedp.SetValue(chromedp.ID("rider-from-lon"), lon(-73.99)),
		chromedp.SetValue(chromedp.ID("rider-to-lat"), "40.765"), chromedp.SetValue(chromedp.ID("rider-to-lon"), lon(-73.97)),
		chromedp.Click(chromedp.ID("rider-request")),
		poll(`document.querySelector("#rider-ride-id").textContent !== "none"`, 10*time.Second),
		waitText("#rider-events", "driver_found"),
		waitText("#rider-status", "matched"))
	run(driverTab, "driver sees the passenger and drives",
		waitText("#driver-events", "passenger_found"),
		poll(`!document.querySelector("#driver-start").disabled`, 10*time.Second),
		chromedp.Click(chromedp.ID("driver-start")),
		waitText("#driver-status", "on ride"),
		poll(`!document.querySelector("#driver-finish").disabled`, 10*time.Second),
		chromedp.Click(chromedp.ID("driver-finish")))
	run(riderTab, "rider sees the ride and the receipt",
		waitText("#rider-events", "ride_started"),
		waitText("#rider-events", "ride_finished"),
		waitText("#rider-events", "receipt"),
		waitText("#rider-status", "paid"),
		waitText("#rider-receipt", "$"))
	run(driverTab, "driver sees the payout and earnings",
		waitText("#driver-events", "payout"),
		waitText("#driver-earnings", "$"))

	// HITCH_WEB_SCREENSHOTS=DIR keeps a picture of each view, for people.
	if dir := os.Getenv("HITCH_WEB_SCREENSHOTS"); dir != "" {
		for name, tab := range map[string]context.Context{"rider": riderTab, "driver": driverTab} {
			png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
			if err != nil || os.WriteFile(dir+"/"+name+".png", png, 0o644) != nil {
				t.Errorf("screenshot of %s: %v", name, err)
			}
		}
	}

	// The operator view shows what it can and says "not available" for
	// the rest; it never breaks.
	run(riderTab, "operator view",
		chromedp.Navigate(base+"/#operator"),
		chromedp.WaitVisible(chromedp.ID("operator-processes")),
		poll(`!document.querySelector("#operator-processes").textContent.includes("not loaded")`, 10*time.Second))
}
