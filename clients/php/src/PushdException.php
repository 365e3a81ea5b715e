<?php

declare(strict_types=1);

namespace Pushd;

/** Anything that kept a request from being carried out. */
class PushdException extends \RuntimeException
{
}
