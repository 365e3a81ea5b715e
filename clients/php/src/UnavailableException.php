<?php

declare(strict_types=1);

namespace Pushd;

/** pushd could not be reached, or the connection broke before its answer. */
class UnavailableException extends PushdException
{
}
