<?php
// Every operation of the PHP client against a real pushd. Run by tests/e2e/clients.rs, which
// starts pushd (--http-listen, --http-token-file), binds one page to uid 42, sets PUSHD_TEXT,
// PUSHD_HTTP and PUSHD_TOKEN, and afterwards checks what the page received, in order, and
// that it was kicked last.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Pushd\Client;
use Pushd\GroupInfo;
use Pushd\GroupSent;
use Pushd\RefusedException;
use Pushd\Reply;
use Pushd\Sent;
use Pushd\UnavailableException;

function expect(mixed $got, mixed $want, string $what): void
{
    if ($got != $want) {
        fwrite(STDERR, "$what: got " . var_export($got, true) . ', want ' . var_export($want, true) . "\n");
        exit(1);
    }
}

function throws(callable $call, string $class, string $what): Throwable
{
    try {
        $call();
    } catch (Throwable $e) {
        expect(get_class($e), $class, $what);
        return $e;
    }
    fwrite(STDERR, "$what: nothing was thrown\n");
    exit(1);
}

$p = new Client();
expect($p->push(42, ['text' => 'hello']), Reply::Ok, 'push to an online uid');
expect($p->push('nobody', 'x'), Reply::Queued, 'push to an offline uid');
expect($p->push(42, ['t' => 1], transient: true), Reply::Ok, 'transient, online');
$away = $p->push('away', 'x', transient: true);
expect([$away, $away->accepted()], [Reply::Fail, false], 'transient, offline');
expect($p->pushMany([[42, ['n' => 1]], [42, ['n' => 2]]]), [Reply::Ok, Reply::Ok], 'pushMany');
expect($p->send(42, 'plain'), new Sent(1, false), 'send');
$gone = $p->send('away', 'x', transient: true);
expect([$gone, $gone->accepted()], [new Sent(0, false), false], 'send, transient, offline');
expect($p->online(42), 1, 'online');
expect($p->online('away'), 0, 'offline');
$listed = array_map(fn ($u) => [$u->uid, count($u->connections)], $p->list());
expect($listed, [['42', 1]], 'list');
expect($p->groupAdd('team a', [42, 'g2']), 2, 'groupAdd');
$members = array_map(fn ($m) => [$m->uid, $m->connections, $m->expiresMs], $p->groupMembers('team a'));
expect($members, [['42', 1, null], ['g2', 0, null]], 'groupMembers');
expect($p->groups(), [new GroupInfo('team a', 2, 1)], 'groups');
expect($p->uidGroups(42), ['team a'], 'uidGroups');
expect($p->pushGroup('team a', ['g' => 1]), Reply::Ok, 'pushGroup');
expect($p->sendGroup('team a', 'gm'), new GroupSent(1, 1, 2), 'sendGroup');
expect($p->groupRemove('team a', ['g2']), 1, 'groupRemove');
expect($p->groupDrop('team a'), 1, 'groupDrop');
expect($p->groupMembers('team a'), [], 'no members');
expect($p->broadcast('all'), 1, 'broadcast');
expect($p->stats()['uids'], 1, 'stats');
// The original recipe's backend code, unchanged.
expect(sendMessageByUid(42, json_encode(['percent' => '88%'])), true, 'sendMessageByUid');
expect(sendMessageByUid('away', 'x'), true, 'sendMessageByUid, queued');

$wrong = new Client(token: 'not-the-token-at-all');
$refused = throws(fn () => $wrong->online(42), RefusedException::class, 'wrong token');
expect($refused->status, 401, 'wrong token status');
$nowhere = new Client(text: '127.0.0.1:1', http: 'http://127.0.0.1:1');
throws(fn () => $nowhere->online(42), UnavailableException::class, 'no HTTP API there');
throws(fn () => $nowhere->push(42, 'x'), UnavailableException::class, 'no text port there');
$bad = throws(fn () => $p->kick(42, ban: 'forever and a day'), RefusedException::class, 'bad ban');
expect($bad->status, 400, 'bad ban status');
expect($p->kick(42, reason: 'bye'), 1, 'kick');
echo "php: every check passed\n";
