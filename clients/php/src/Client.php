<?php

declare(strict_types=1);

namespace Pushd;

/**
 * A client of one pushd: its text port (pushes answered ok, queued or fail, as in the
 * original recipe) and its HTTP API (everything else). No dependencies beyond PHP 8.1.
 *
 *     $pushd = new Pushd\Client();              // PUSHD_TEXT, PUSHD_HTTP, PUSHD_TOKEN, or defaults
 *     $pushd->push(42, ['text' => 'hello']);    // Pushd\Reply::Ok
 */
final class Client
{
    public const DEFAULT_TEXT = '127.0.0.1:5678';
    public const DEFAULT_HTTP = 'http://127.0.0.1:8080';

    public readonly string $text;
    public readonly string $http;
    private ?string $token;
    /** @var resource|null the text-port connection, kept open */
    private $socket = null;

    public function __construct(
        ?string $text = null,
        ?string $http = null,
        ?string $token = null,
        private readonly float $timeout = 5.0,
    ) {
        $this->text = $text ?? (getenv('PUSHD_TEXT') ?: self::DEFAULT_TEXT);
        $this->http = rtrim($http ?? (getenv('PUSHD_HTTP') ?: self::DEFAULT_HTTP), '/');
        $this->token = $token ?? (getenv('PUSHD_TOKEN') ?: null);
    }

    public function __destruct()
    {
        $this->close();
    }

    public function close(): void
    {
        if ($this->socket !== null) {
            fclose($this->socket);
            $this->socket = null;
        }
    }

    // The text port: one JSON line per push; the page receives the whole line.

    /** Pushes $data (an array, or a string sent as {"message": ...}) to $uid. */
    public function push(int|string $uid, array|string $data, bool $transient = false): Reply
    {
        return $this->pushLines([self::line('uid', $uid, $data, $transient)])[0];
    }

    /**
     * Pushes each [$uid, $data] pair in one write.
     *
     * @param iterable<array{0: int|string, 1: array|string}> $pushes
     * @return list<Reply> one per push, in order
     */
    public function pushMany(iterable $pushes, bool $transient = false): array
    {
        $lines = [];
        foreach ($pushes as [$uid, $data]) {
            $lines[] = self::line('uid', $uid, $data, $transient);
        }
        return $lines === [] ? [] : $this->pushLines($lines);
    }

    /** Pushes $data to every member of $group. */
    public function pushGroup(string $group, array|string $data, bool $transient = false): Reply
    {
        return $this->pushLines([self::line('group', $group, $data, $transient)])[0];
    }

    // The HTTP API.

    /** Sends $message as it is to every connection of $uid. */
    public function send(int|string $uid, string $message, bool $transient = false): Sent
    {
        $b = $this->call('POST', '/v1/send/' . self::segment($uid) . self::transient($transient), $message, [200, 404]);
        return new Sent($b['delivered'], $b['queued']);
    }

    /** Sends $message to every member of $group. */
    public function sendGroup(string $group, string $message, bool $transient = false): GroupSent
    {
        $path = '/v1/groups/' . self::segment($group) . '/send' . self::transient($transient);
        $b = $this->call('POST', $path, $message, [200, 404]);
        return new GroupSent($b['delivered'], $b['queued'], $b['members']);
    }

    /** Sends $message to every bound connection; how many took it. */
    public function broadcast(string $message): int
    {
        return $this->call('POST', '/v1/broadcast', $message, [200])['delivered'];
    }

    /** Closes every connection of $uid (4000, or 4003 with a $ban such as "1h"); how many. */
    public function kick(int|string $uid, ?string $reason = null, ?string $ban = null): int
    {
        $body = array_filter(['reason' => $reason, 'ban' => $ban], fn ($v) => $v !== null);
        $json = $body === [] ? null : json_encode($body, JSON_THROW_ON_ERROR);
        return $this->call('POST', '/v1/kick/' . self::segment($uid), $json, [200, 404])['kicked'];
    }

    /** How many connections $uid has (0: offline). */
    public function online(int|string $uid): int
    {
        return $this->call('GET', '/v1/online/' . self::segment($uid), null, [200, 404])['connections'];
    }

    /** @return list<OnlineUid> every online uid with its connections */
    public function list(): array
    {
        return array_map(
            fn (array $u) => new OnlineUid($u['uid'], array_map(
                fn (array $c) => new Connection($c['id'], $c['peer'], $c['idle_ms'], $c['connected_ms'], $c['node'] ?? null),
                $u['connections'],
            )),
            $this->call('GET', '/v1/list', null, [200]),
        );
    }

    /** pushd's figures, as `pushctl --json stats` shows them. */
    public function stats(): array
    {
        return $this->call('GET', '/v1/stats', null, [200]);
    }

    /**
     * Makes $uids members of $group (for $ttl, such as "1h", or for good); how many were
     * added. A limit's refusal throws RefusedException (429).
     *
     * @param iterable<int|string> $uids
     */
    public function groupAdd(string $group, iterable $uids, ?string $ttl = null): int
    {
        $body = ['add' => self::strings($uids)];
        if ($ttl !== null) {
            $body['ttl'] = $ttl;
        }
        return $this->members($group, $body)['added'];
    }

    /**
     * Ends $uids' memberships of $group; how many were members.
     *
     * @param iterable<int|string> $uids
     */
    public function groupRemove(string $group, iterable $uids): int
    {
        return $this->members($group, ['remove' => self::strings($uids)])['removed'];
    }

    /** Removes $group; how many members it had. */
    public function groupDrop(string $group): int
    {
        return $this->call('DELETE', '/v1/groups/' . self::segment($group), null, [200, 404])['removed'];
    }

    /** @return list<Member> the members of $group (empty when it has none) */
    public function groupMembers(string $group): array
    {
        $b = $this->call('GET', '/v1/groups/' . self::segment($group), null, [200, 404]);
        return array_map(
            fn (array $m) => new Member($m['uid'], $m['connections'], $m['expires_ms']),
            $b['members'] ?? [],
        );
    }

    /** @return list<GroupInfo> every group */
    public function groups(): array
    {
        return array_map(
            fn (array $g) => new GroupInfo($g['group'], $g['members'], $g['online']),
            $this->call('GET', '/v1/groups', null, [200]),
        );
    }

    /** @return list<string> the names of the groups $uid belongs to */
    public function uidGroups(int|string $uid): array
    {
        return $this->call('GET', '/v1/uids/' . self::segment($uid) . '/groups', null, [200])['groups'];
    }

    // The wire.

    /**
     * A text-port line: $data (an array, or a string sent as {"message": ...}) with the uid or
     * group in front.
     */
    public static function line(string $target, int|string $name, array|string $data, bool $transient): string
    {
        if (is_string($data)) {
            $data = ['message' => $data];
        }
        $name = ($target === 'uid' && is_int($name)) ? $name : (string) $name;
        $fields = [$target => $name] + array_diff_key($data, ['uid' => 0, 'group' => 0]);
        if ($transient) {
            $fields['transient'] = true;
        }
        return json_encode($fields, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES) . "\n";
    }

    /** @param list<string> $lines @return list<Reply> */
    private function pushLines(array $lines): array
    {
        try {
            if ($this->socket === null) {
                $socket = @stream_socket_client("tcp://{$this->text}", $errno, $error, $this->timeout);
                if ($socket === false) {
                    throw new UnavailableException("text port {$this->text}: $error");
                }
                stream_set_timeout($socket, (int) ceil($this->timeout));
                $this->socket = $socket;
            }
            $all = implode('', $lines);
            for ($written = 0; $written < strlen($all); $written += $n) {
                $n = @fwrite($this->socket, substr($all, $written));
                if ($n === false || $n === 0) {
                    throw new UnavailableException("text port {$this->text}: the write failed");
                }
            }
            $replies = [];
            foreach ($lines as $_) {
                $answer = fgets($this->socket);
                if ($answer === false || !str_ends_with($answer, "\n")) {
                    throw new UnavailableException("text port {$this->text}: no answer");
                }
                $replies[] = Reply::from(trim($answer));
            }
            return $replies;
        } catch (UnavailableException $e) {
            $this->close();
            throw $e;
        }
    }

    private function members(string $group, array $body): array
    {
        $json = json_encode($body, JSON_THROW_ON_ERROR);
        return $this->call('POST', '/v1/groups/' . self::segment($group) . '/members', $json, [200]);
    }

    /**
     * One HTTP request; the decoded JSON answer when its status is one of $answers (404 often
     * is an answer: offline, not a member), else RefusedException with pushd's sentence.
     *
     * @param list<int> $answers
     */
    private function call(string $method, string $path, ?string $body, array $answers): array
    {
        $headers = ['Content-Type: application/octet-stream', 'Connection: close'];
        if ($this->token !== null) {
            $headers[] = "Authorization: Bearer {$this->token}";
        }
        $context = stream_context_create(['http' => [
            'method' => $method,
            'header' => $headers,
            'content' => $body ?? '',
            'timeout' => $this->timeout,
            'ignore_errors' => true,
            'protocol_version' => 1.1,
        ]]);
        $answer = @file_get_contents($this->http . $path, false, $context);
        // PHP 8.4 deprecates the magic variable in favour of this function.
        $headerLines = function_exists('http_get_last_response_headers')
            ? (http_get_last_response_headers() ?? [])
            : ($http_response_header ?? []);
        if ($answer === false || $headerLines === []) {
            $why = error_get_last()['message'] ?? 'no answer';
            throw new UnavailableException("HTTP API {$this->http}: $why");
        }
        $status = (int) (explode(' ', $headerLines[0])[1] ?? 0);
        $decoded = json_decode($answer, true);
        if (!in_array($status, $answers, true) || !is_array($decoded)) {
            $message = is_array($decoded) ? ($decoded['error'] ?? $answer) : $answer;
            throw new RefusedException($status, trim((string) $message));
        }
        return $decoded;
    }

    private static function segment(int|string $name): string
    {
        return rawurlencode((string) $name);
    }

    private static function transient(bool $transient): string
    {
        return $transient ? '?transient=1' : '';
    }

    /** @param iterable<int|string> $uids @return list<string> */
    private static function strings(iterable $uids): array
    {
        $out = [];
        foreach ($uids as $uid) {
            $out[] = (string) $uid;
        }
        return $out;
    }
}
