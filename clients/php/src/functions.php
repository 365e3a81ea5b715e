<?php

declare(strict_types=1);

// The original recipe's call, for code written against it: pushes $message to $uid through
// the text port. A message that is a JSON object (as a string or an array) gets the uid added;
// any other is sent as {"uid": ..., "message": ...}. True when a connection took it or its
// mailbox kept it; false when neither; Pushd\UnavailableException when pushd is unreachable.
if (!function_exists('sendMessageByUid')) {
    function sendMessageByUid(int|string $uid, mixed $message, ?string $address = null): bool
    {
        if (is_string($message)) {
            $decoded = json_decode($message, true);
            $message = is_array($decoded) && !array_is_list($decoded) ? $decoded : ['message' => $message];
        } elseif (!is_array($message)) {
            $message = ['message' => $message];
        }
        $address ??= getenv('PUSHD_TEXT') ?: Pushd\Client::DEFAULT_TEXT;
        $socket = @stream_socket_client("tcp://$address", $errno, $error, 5);
        if ($socket === false) {
            throw new Pushd\UnavailableException("text port $address: $error");
        }
        fwrite($socket, Pushd\Client::line('uid', $uid, $message, false));
        $answer = fgets($socket);
        fclose($socket);
        if ($answer === false) {
            throw new Pushd\UnavailableException("text port $address: no answer");
        }
        return in_array(trim($answer), ['ok', 'queued'], true);
    }
}
