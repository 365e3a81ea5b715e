"""A pushd.v2 page that gets a push, goes away, and resumes with since (README, "Resume").

Beside a pushd on its defaults: python3 examples/resume.py  (pip install websockets)
"""
import asyncio, subprocess, websockets
CTL = ["pushctl"]
def ctl(*args):
    out = subprocess.run(CTL + list(args), capture_output=True, text=True).stdout.strip()
    print("$ pushctl " + " ".join(args)); print(out)
async def page(since=None, expect=1):
    url = "ws://127.0.0.1:1234/" + (f"?since={since}" if since else "")
    async with websockets.connect(url, subprotocols=["pushd.v2"]) as ws:
        print(f"-- page connects{' with since=' + since if since else ''}, protocol {ws.subprotocol}")
        await ws.send("42")
        await asyncio.sleep(0.2)
        if expect == 1 and since is None:
            ctl("send", "42", "hello")
        last = None
        for _ in range(expect):
            frame = await ws.recv(); print("frame:", frame)
            if frame != "!gap": last = frame.split(" ")[0]
        return last
async def main():
    last = await page()
    await asyncio.sleep(0.2)
    ctl("send", "42", "while away 1"); ctl("send", "42", "while away 2")
    await page(since=last, expect=2)
asyncio.run(main())
