# A tiny origin for the docs/edge.md examples: each path sets its own caching headers.
import http.server, time, sys
count = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self, body=b""):
        count["n"] += 1
        p = self.path.split("?")[0]
        if p.startswith("/static/"):
            hdr = {"Cache-Control": "public, max-age=300", "Surrogate-Key": "static css"}
        elif p.startswith("/news"):
            hdr = {"Cache-Control": "max-age=5, stale-while-revalidate=60, stale-if-error=3600", "ETag": '"news-1"'}
        elif p.startswith("/cdn"):
            hdr = {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=120"}
        elif p.startswith("/lang"):
            hdr = {"Cache-Control": "max-age=300", "Vary": "Accept-Language"}
            body = ("lang=" + self.headers.get("Accept-Language", "") + "\n").encode()
        elif p.startswith("/big/"):
            hdr = {"Cache-Control": "public, max-age=300", "ETag": '"big-1"'}
            body = "".join("line %d of a large, very compressible page\n" % i for i in range(100)).encode()
        else:
            hdr = {}
        if self.command == "GET" and p.startswith("/news") and self.headers.get("If-None-Match") == '"news-1"':
            self.send_response(304)
            for k, v in hdr.items(): self.send_header(k, v)
            self.end_headers(); return
        body = body or ("origin answer %d for %s\n" % (count["n"], self.path)).encode()
        self.send_response(200)
        for k, v in hdr.items(): self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self): self.answer()
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0")); self.rfile.read(n)
        count["n"] += 1
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
